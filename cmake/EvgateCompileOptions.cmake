# Compile options shared by every evgate target.
#
# Our own code builds with warnings as errors; third-party headers come from /usr/include and are
# system headers, so their warnings never fail the build.

add_library(evgate_warnings INTERFACE)
target_compile_options(evgate_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Werror
  -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual -Wcast-qual -Wformat=2
  -Wimplicit-fallthrough -Wmissing-declarations)

if(EVGATE_SANITIZE)
  list(JOIN EVGATE_SANITIZE "," evgate_sanitizers)
  add_compile_options(-fsanitize=${evgate_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${evgate_sanitizers})
endif()

if(EVGATE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "EVGATE_FUZZ needs clang's libFuzzer: configure with the fuzz preset")
  endif()
  if(EVGATE_SANITIZE)
    message(FATAL_ERROR "EVGATE_FUZZ brings its own sanitizers: leave EVGATE_SANITIZE empty")
  endif()
  # Every library gets libFuzzer's coverage instrumentation and ASan+UBSan, so the fuzzer is
  # guided by, and checks, the code under test; only the fuzz executables link libFuzzer itself
  # (-fsanitize=fuzzer, in tests/fuzz), since it brings its own main().
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

# Adds a GoogleTest executable built from SOURCES and registers every test in it with ctest.
# LABEL becomes the ctest label so a subset can be run with `ctest -L REGEX`. One label only:
# gtest_discover_tests cannot carry a list; use names like "reactor-differential" so that both
# `-L reactor` and `-L differential` select it.
function(evgate_add_gtest name)
  cmake_parse_arguments(ARG "" "LABEL" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main evgate_warnings)
  set(environment)
  if("thread" IN_LIST EVGATE_SANITIZE)
    # gRPC and its dependencies come uninstrumented from Debian (tests/tsan.supp says why).
    set(environment ENVIRONMENT "TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 30
                       PROPERTIES LABELS "${ARG_LABEL}" TIMEOUT 120 ${environment})
endfunction()
