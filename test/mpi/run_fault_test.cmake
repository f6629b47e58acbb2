# Runs an mpirun job in which one rank fails on purpose and checks how the job ends.
#   -DMPIEXEC=mpirun -DRANKS=3 -DPROGRAM=<executable> -DARGS="a|b|c" (program arguments, '|'-separated)
#   -DEXPECT=fail|pass -DTIMEOUT=<comm timeout, s> [-DMESSAGES="text|text"] [-DMPIEXEC_FLAG=...]
# EXPECT=pass: the job must succeed. EXPECT=fail: it must end within TIMEOUT + 10 s plus 5 s of
# start-up slack, with a non-zero exit code (except under --enable-recovery, where Open MPI 4.1's
# mpirun exits 0 even after MPI_Abort), and every text of MESSAGES must appear in its output.
foreach(var MPIEXEC RANKS PROGRAM ARGS EXPECT TIMEOUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fault_test.cmake: -D${var}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" ";" messages "${MESSAGES}")

string(TIMESTAMP start "%s")
execute_process(
  COMMAND ${MPIEXEC} -np ${RANKS} --oversubscribe ${MPIEXEC_FLAG} ${PROGRAM} ${args}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
string(TIMESTAMP end "%s")
math(EXPR elapsed "${end} - ${start}")
message("exit: ${rc}, ${elapsed} s\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
set(all "${out}\n${err}")

if(EXPECT STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the job failed (exit ${rc})")
  endif()
else()
  if(NOT MPIEXEC_FLAG STREQUAL "--enable-recovery" AND rc EQUAL 0)
    message(FATAL_ERROR "the job succeeded although a rank failed on purpose")
  endif()
  if(rc MATCHES "timeout")
    message(FATAL_ERROR "the job hung: ${rc}")
  endif()
  math(EXPR limit "${TIMEOUT} + 10 + 5")
  if(elapsed GREATER limit)
    message(FATAL_ERROR "the job took ${elapsed} s to fail; the limit is ${limit} s")
  endif()
endif()
foreach(expected IN LISTS messages)
  string(FIND "${all}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the output does not contain '${expected}'")
  endif()
endforeach()
message("ok: the job ended with exit ${rc} after ${elapsed} s")
