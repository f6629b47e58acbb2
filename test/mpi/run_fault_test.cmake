# Runs the communicator fault program under mpirun and checks how the job ends.
#   -DMPIEXEC=mpirun -DPROGRAM=<comm_fault_program> -DFAULT=none|sleep|kill -DRANKS=3
#   -DVICTIM=1 -DSTEP=5 -DTIMEOUT=2 [-DMPIEXEC_FLAG=--enable-recovery]
# FAULT=none must complete every step. Otherwise the job must end within TIMEOUT + 10 s plus
# start-up slack, exit non-zero, and whenever the survivors' deadline path runs (a sleeping rank,
# or a killed one under --enable-recovery) a survivor must name the silent rank and the step.
foreach(var MPIEXEC PROGRAM FAULT RANKS VICTIM STEP TIMEOUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fault_test.cmake: -D${var}=... is required")
  endif()
endforeach()
set(recovery OFF)
if(MPIEXEC_FLAG STREQUAL "--enable-recovery")
  set(recovery ON)
endif()

string(TIMESTAMP start "%s")
execute_process(
  COMMAND ${MPIEXEC} -np ${RANKS} --oversubscribe ${MPIEXEC_FLAG} ${PROGRAM}
          --timeout ${TIMEOUT} --steps 10 --victim ${VICTIM} --fault-step ${STEP} --fault ${FAULT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
string(TIMESTAMP end "%s")
math(EXPR elapsed "${end} - ${start}")
message("exit: ${rc}, ${elapsed} s\n--- stdout ---\n${out}\n--- stderr ---\n${err}")

if(FAULT STREQUAL "none")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "completed 10 steps on ${RANKS} ranks")
    message(FATAL_ERROR "the fault-free run failed (exit ${rc})")
  endif()
  return()
endif()

# Open MPI 4.1's mpirun exits 0 under --enable-recovery even after MPI_Abort, so the exit code
# is only checked without it; the survivors' messages are checked instead.
if(NOT recovery AND rc EQUAL 0)
  message(FATAL_ERROR "the job succeeded although rank ${VICTIM} failed (${FAULT}) at step ${STEP}")
endif()
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job hung: ${rc}")
endif()
# Start-up of ${RANKS} oversubscribed ranks and ${STEP} quick steps: 5 s of slack.
math(EXPR limit "${TIMEOUT} + 10 + 5")
if(elapsed GREATER limit)
  message(FATAL_ERROR "the job took ${elapsed} s to fail; the limit is ${limit} s")
endif()
if(FAULT STREQUAL "sleep" OR recovery)
  foreach(expected "all_reduce at step ${STEP} timed out after ${TIMEOUT}.0 s"
                   "rank(s) ${VICTIM} stopped answering")
    string(FIND "${err}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "no survivor reported '${expected}'")
    endif()
  endforeach()
endif()
message("ok: the job ended with exit ${rc} after ${elapsed} s")
