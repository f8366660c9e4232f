#!/usr/bin/env bash
# The packages: CPack's two .deb files hold what they should and name their dependencies; and the
# library alone builds as a shared library with a soname, without the daemon's or tools'
# dependencies being looked for.
#   tests/package/deb.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/shmbus-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

(cd "$build" && cpack -G DEB -B "$work/debs" >/dev/null)
runtime=$(ls "$work"/debs/shmbus_*.deb) dev=$(ls "$work"/debs/shmbus-dev_*.deb)
depends=$(dpkg-deb -f "$runtime" Depends)
echo "shmbus Depends: $depends"
for lib in libsystemd0 libspdlog libprometheus-cpp-pull libtomlplusplus libncurses; do
  [[ $depends == *"$lib"* ]] || fail "shmbus does not depend on $lib"
done
files=$(dpkg-deb -c "$runtime" | awk '{print $6}')
for f in ./usr/bin/shmbusd ./usr/bin/shmbus ./usr/bin/bus-top ./usr/lib/systemd/system/shmbusd.service \
         ./usr/lib/systemd/system/shmbusd@.service ./usr/share/man/man8/shmbusd.8 ./usr/share/man/man1/shmbus.1 \
         ./usr/share/man/man1/bus-top.1 ./usr/share/doc/shmbus/LICENSE ./usr/share/shmbus/shmbusd.toml; do
  grep -qx -- "$f" <<<"$files" || fail "shmbus lacks $f"
done
devfiles=$(dpkg-deb -c "$dev" | awk '{print $6}')
for f in ./usr/include/shmbus/shmbus.h ./usr/lib/libshmbus.a ./usr/lib/pkgconfig/shmbus.pc ./usr/lib/cmake/shmbus/shmbusConfig.cmake; do
  grep -qx -- "$f" <<<"$devfiles" || fail "shmbus-dev lacks $f"
done

cmake -S "$src" -B "$work/lib" -G Ninja -DBUILD_SHARED_LIBS=ON -DSHMBUS_BUILD_DAEMON=OFF -DSHMBUS_BUILD_TOOLS=OFF \
      -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_BUILD_EXAMPLES=OFF >"$work/lib.log" 2>&1 || { cat "$work/lib.log"; fail "configure"; }
grep -qE "^(spdlog|CLI11|tomlplusplus|prometheus-cpp|nlohmann_json)_DIR" "$work/lib/CMakeCache.txt" && fail "a library-only build looked for a tool's dependency"
cmake --build "$work/lib" >/dev/null
soname=$(readelf -d "$work"/lib/bus/libshmbus.so.0.* | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
echo "soname: $soname"
[[ $soname == libshmbus.so.0 ]] || fail "soname is '$soname'"
