# Script mode: writes OUTPUT from TEMPLATE; the file is only touched when its content changes.
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
  OUTPUT_VARIABLE GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0 OR GIT_HASH STREQUAL "")
  # A copy of the tree without .git (the device bundle's) says where it came from in GIT_HASH.
  if(EXISTS "${SOURCE_DIR}/GIT_HASH")
    file(STRINGS "${SOURCE_DIR}/GIT_HASH" GIT_HASH LIMIT_COUNT 1)
  else()
    set(GIT_HASH "unknown")
  endif()
else()
  execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain --untracked-files=no
    OUTPUT_VARIABLE _dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT _dirty STREQUAL "")
    string(APPEND GIT_HASH "-dirty")
  endif()
endif()
configure_file("${TEMPLATE}" "${OUTPUT}" @ONLY)
