# The ROS 2 message wheels on PyPI export an include directory of the machine they were built on
# (/opt/python/cpXY-cpXY/include/pythonX.Y). CMake refuses imported targets whose include directories do not
# exist, so once every target is known (deferred to the end of the directory) drop those paths. On a real ROS 2
# install no target carries such a path and this does nothing.
function(physai_drop_missing_wheel_includes)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/" AND NOT EXISTS "${_dir}")
        continue()
      endif()
      list(APPEND _kept "${_dir}")
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL physai_drop_missing_wheel_includes)
