"""World models that predict the outcome of candidate action chunks (physics rollout and learned)."""
