"""Which wire key carries which observation group: request/response key mapping for remote policy servers.

A remote policy (an openpi server running pi0 / pi0.5, our own `physai serve`, a LeRobot policy served by
`physai lerobot serve`) names its inputs its own way. A key map lists, for each request key, the observation
group it carries:

    image, wrist_image, state, obstacles, parts, instruction   the whole group
    state[i:j]                                                 state features i..j-1 (DROID splits joints/gripper)
    ignore                                                     server side only: accepted and discarded (listed)

and the reply key holding the (H, D) actions. Presets name the conventions in use:

- `physai`: `observation/<group>` for every group, `prompt` (our server, `physai serve`; the default);
- `libero`: `observation/image`, `observation/wrist_image`, `observation/state`, `prompt` (openpi's LIBERO
  example client);
- `droid`: `observation/exterior_image_1_left`, `observation/wrist_image_left`, `observation/joint_position`
  (state[0:7]), `observation/gripper_position` (state[7:8]), `prompt` (openpi's DROID example client);
- `lerobot`: `observation.images.top`, `observation.images.wrist`, `observation.state`, `task` (LeRobot
  feature names).

`key_map` entries (`"remote_key=source"`) are added to the preset or replace its entry for that key, and
`"remote_key="` removes one, e.g. `["observation.images.top=", "observation.images.front=image"]` for a LeRobot
policy whose camera is called `front`. Nothing is dropped silently: a client whose spec has a group that no key
carries, or a key whose group the spec lacks, is refused at start-up with both named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

GROUPS = ("image", "wrist_image", "state", "obstacles", "parts", "instruction")
IGNORE = "ignore"
PRESETS: dict[str, dict[str, str]] = {
    "physai": {"observation/image": "image", "observation/wrist_image": "wrist_image",
               "observation/state": "state", "observation/obstacles": "obstacles", "observation/parts": "parts",
               "prompt": "instruction"},
    "libero": {"observation/image": "image", "observation/wrist_image": "wrist_image",
               "observation/state": "state", "prompt": "instruction"},
    "droid": {"observation/exterior_image_1_left": "image", "observation/wrist_image_left": "wrist_image",
              "observation/joint_position": "state[0:7]", "observation/gripper_position": "state[7:8]",
              "prompt": "instruction"},
    "lerobot": {"observation.images.top": "image", "observation.images.wrist": "wrist_image",
                "observation.state": "state", "task": "instruction"},
}
_SOURCE = re.compile(r"^(?P<group>[a-z_]+)(\[(?P<lo>\d+):(?P<hi>\d+)\])?$")


class KeyMapError(ValueError):
    """A key map does not fit the observation spec or a request; the message names key and group."""


@dataclass(frozen=True)
class Source:
    """What one request key carries: a group, or a slice [lo, hi) of the state vector."""

    group: str
    lo: int | None = None
    hi: int | None = None

    @staticmethod
    def parse(text: str) -> Source:
        """`state[0:7]` -> Source("state", 0, 7); raises KeyMapError for unknown groups or bad slices."""
        match = _SOURCE.match(text.strip())
        if match is None or match["group"] not in (*GROUPS, IGNORE):
            raise KeyMapError(f"source {text!r}: expected one of {[*GROUPS, IGNORE]} or state[i:j]")
        if match["lo"] is None:
            return Source(match["group"])
        lo, hi = int(match["lo"]), int(match["hi"])
        if match["group"] != "state" or hi <= lo:
            raise KeyMapError(f"source {text!r}: only state can be sliced, as state[i:j] with i < j")
        return Source("state", lo, hi)


@dataclass(frozen=True)
class KeyMap:
    """Request keys -> sources, and the reply key holding the actions."""

    request: tuple[tuple[str, Source], ...]
    actions_key: str = "actions"

    def groups(self) -> set[str]:
        """Observation groups carried (not counting ignored keys)."""
        return {source.group for _, source in self.request if source.group != IGNORE}

    def encode(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """Client side: observation groups (already in wire form) -> request keys."""
        out: dict[str, Any] = {}
        for key, source in self.request:
            if source.group == IGNORE:
                continue
            if source.group not in obs:
                raise KeyMapError(f"{key}: observation group {source.group!r} missing")
            value = obs[source.group]
            if source.lo is not None:
                state = np.asarray(value)
                if state.shape[-1] < source.hi:
                    raise KeyMapError(f"{key}: state[{source.lo}:{source.hi}] but the state has {state.shape[-1]} "
                                      "values")
                value = state[..., source.lo:source.hi]
            out[key] = value
        return out

    def decode(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Server side: a request -> observation groups; unknown keys and missing keys are errors."""
        known = dict(self.request)
        unknown = sorted(set(request) - set(known))
        if unknown:
            raise KeyMapError(f"request keys {unknown} are not in the key map (expected {sorted(known)})")
        missing = sorted(k for k, s in self.request if k not in request and s.group != IGNORE)
        if missing:
            raise KeyMapError(f"request lacks {missing}")
        obs: dict[str, Any] = {}
        slices: list[tuple[int, np.ndarray]] = []
        for key, source in self.request:
            if source.group == IGNORE:
                continue
            if source.lo is None:
                obs[source.group] = request[key]
            else:
                part = np.asarray(request[key], dtype=np.float64).reshape(-1)
                if part.shape[0] != source.hi - source.lo:
                    raise KeyMapError(f"{key}: {part.shape[0]} values, expected {source.hi - source.lo} "
                                      f"(state[{source.lo}:{source.hi}])")
                slices.append((source.lo, part))
        if slices:
            obs["state"] = np.concatenate([part for _, part in sorted(slices, key=lambda s: s[0])])
        return obs

    def ignored_keys(self) -> list[str]:
        """Keys accepted and discarded (server side)."""
        return [key for key, source in self.request if source.group == IGNORE]


def make_keymap(groups: Iterable[str], preset: str = "physai", overrides: Iterable[str] = (),
                actions_key: str = "actions", state_dim: int | None = None, server: bool = False) -> KeyMap:
    """Build the key map for a spec with observation `groups`, checking that every group is carried.

    Args:
        groups: the spec's observation groups (`ObservationSpec.groups()`).
        preset: one of PRESETS.
        overrides: "remote_key=source" entries added to or replacing the preset's ("remote_key=" removes one).
        actions_key: reply key holding the actions.
        state_dim: length of the state vector, to check state slices cover it exactly.
        server: decoding side: preset keys whose group the spec lacks are accepted and ignored (listed), not
            left out.

    Raises:
        KeyMapError: unknown preset or source, a group no key carries, or a key whose group the spec lacks.
    """
    if preset not in PRESETS:
        raise KeyMapError(f"key preset {preset!r} not one of {sorted(PRESETS)}")
    wanted = set(groups)
    entries = {key: Source.parse(source) for key, source in PRESETS[preset].items()}
    # A preset names every key of its convention; a client sends those its spec has, a server accepts the rest.
    entries = {k: (s if s.group in wanted else Source(IGNORE)) for k, s in entries.items()
               if s.group in wanted or server}
    for item in overrides:
        key, sep, source = item.partition("=")
        if not sep or not key.strip():
            raise KeyMapError(f"key_map entry {item!r}: expected 'remote_key=source'")
        if source.strip():
            entries[key.strip()] = Source.parse(source)
        else:
            entries.pop(key.strip(), None)
    carried = {s.group for s in entries.values() if s.group != IGNORE}
    extra = sorted(k for k, s in entries.items() if s.group not in wanted and s.group != IGNORE)
    if extra:
        raise KeyMapError(f"keys {extra} carry groups this policy's spec does not have (spec: {sorted(wanted)})")
    missing = sorted(wanted - carried)
    if missing:
        raise KeyMapError(f"observation groups {missing} are not carried by any key of preset {preset!r}; add "
                          "key_map entries 'remote_key=<group>' (or remove the groups from the spec)")
    slices = sorted((s.lo, s.hi) for s in entries.values() if s.group == "state" and s.lo is not None)
    if slices:
        if any(s.group == "state" and s.lo is None for s in entries.values()):
            raise KeyMapError("state is sent whole and in slices; use one or the other")
        edges = [0] + [hi for _, hi in slices]
        if [lo for lo, _ in slices] != edges[:-1] or (state_dim is not None and edges[-1] != state_dim):
            raise KeyMapError(f"state slices {slices} must cover the state's {state_dim} values once, in order")
    return KeyMap(request=tuple(entries.items()), actions_key=actions_key)


def server_keymap(config: Any, preset: str = "physai", overrides: Iterable[str] = (),
                  actions_key: str = "actions") -> KeyMap:
    """The decoding key map of a server for a checkpoint's `PolicyConfig`."""
    spec = config.observation
    return make_keymap(spec.groups(), preset, overrides, actions_key,
                       len(spec.state.names) if spec.state is not None else None, server=True)
