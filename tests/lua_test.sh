#!/bin/sh
# How ctest runs a Lua test (tests/CMakeLists.txt): `sh tests/lua_test.sh CONFIT SCRIPT`. The test
# passes when confit exits 0 and its output holds the harness's summary with no failure
# ("N passed, 0 failed, ...", printed by H.finish); any other status is the test's (77: skipped).
# Both are asked: a confit that loads a script without running it (a mutant of lua/main.c's
# run_script, twenty-ninth session) exits 0 for every test, and ctest's PASS_REGULAR_EXPRESSION
# alone ignores the status, so a sanitizer's report after the summary (LeakSanitizer exits 23)
# would pass.
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if ! printf '%s\n' "$out" | grep -Eq '^[0-9]+ passed, 0 failed'; then
  echo "lua_test.sh: $* exited 0 without the harness's summary (N passed, 0 failed): the script did not run to H.finish" >&2
  exit 1
fi
