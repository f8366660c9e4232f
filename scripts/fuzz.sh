#!/usr/bin/env bash
# A long fuzzing campaign with clang's libFuzzer (and ASan + UBSan) over the targets in tests/fuzz.
# The suite runs the same targets for 2 s each with a standalone driver; this is the deep run.
#   scripts/fuzz.sh [TARGET] [SECONDS]      TARGET: segment, parsers or frame (default: all), 600 s each
# New inputs that reach new code are added to tests/fuzz/corpus/TARGET; a crash leaves
# crash-* in build/fuzz/ and becomes a regression input once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("${1:-segment parsers frame}")
seconds="${2:-600}"
if ! command -v clang++ >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then echo "fuzz: clang is missing: sudo apt-get install clang" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang >/dev/null
fi
scripts/setup.sh release >/dev/null  # the Debian packages the library needs, and build/ (shmbus/version.h is generated there)
mkdir -p build/fuzz
flags=(-std=c++20 -O1 -g -mcx16 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Ibus/include -Ibuild/bus/include -Ibus/src -Idaemon -Itests/support)
# The library, the supervisor library and shmbusd's core: every source but shmbusd's main().
mapfile -t sources < <(find bus/src daemon -name '*.cpp' ! -path daemon/main.cpp | sort)
for t in ${targets[*]}; do
  echo "fuzz: building $t"
  clang++ "${flags[@]}" "tests/fuzz/fuzz_$t.cpp" "${sources[@]}" -lspdlog -lfmt -lprometheus-cpp-pull -lprometheus-cpp-core -lsystemd -lz -lpthread -o "build/fuzz/fuzz_$t"
  echo "fuzz: running $t for $seconds s"
  (cd build/fuzz && "./fuzz_$t" -max_total_time="$seconds" -max_len=4096 "../../tests/fuzz/corpus/$t")
done
