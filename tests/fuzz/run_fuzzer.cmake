# One bounded fuzz run for ctest: cmake -DFUZZER=exe -DSEEDS=dir -DWORK=dir -DSECONDS=n -P this.
#
# The fuzzer writes the inputs it finds into its corpus directory, so it gets a fresh copy of the
# seeds under WORK: the repository's corpus never changes and every run starts alike. A crash, a
# leak, a timeout or a failed invariant makes libFuzzer exit non-zero and leaves the input in
# WORK (crash-*, leak-*, timeout-*): that fails the test.

foreach(var FUZZER SEEDS WORK SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus")
file(COPY "${SEEDS}/" DESTINATION "${WORK}/corpus")

# -timeout: one input running this long is a hang. -rss_limit_mb: a leak or a blow-up fails
# the run before it troubles the machine. -print_final_stats: execs and coverage in the log.
execute_process(
  COMMAND "${FUZZER}" -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/ "${WORK}/corpus"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${result}); the input is in ${WORK}/")
endif()
