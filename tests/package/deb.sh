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
# Maintainer scripts: the shmbus group and systemd told of the units.
dpkg-deb -e "$runtime" "$work/control"
[[ -x $work/control/postinst && -x $work/control/postrm ]] || fail "shmbus has no postinst/postrm"
grep -q "groupadd --system shmbus" "$work/control/postinst" || fail "postinst makes no shmbus group"
grep -q "daemon-reload" "$work/control/postinst" || fail "postinst does not reload systemd"
grep -q "daemon-reload" "$work/control/postrm" || fail "postrm does not reload systemd"
# The library in Debian's multiarch directory.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
devfiles=$(dpkg-deb -c "$dev" | awk '{print $6}')
for f in ./usr/include/shmbus/shmbus.h ./usr/include/shmbus/shmbus_c.h ./usr/lib/$multiarch/libshmbus.a \
         ./usr/lib/$multiarch/pkgconfig/shmbus.pc ./usr/lib/$multiarch/pkgconfig/shmbus-c.pc \
         ./usr/lib/$multiarch/cmake/shmbus/shmbusConfig.cmake ./usr/lib/$multiarch/libshmbus_c.so; do
  grep -qx -- "$f" <<<"$devfiles" || fail "shmbus-dev lacks $f"
done
# The C API's own package, its soname the C ABI's (1), exporting nothing but shmbus_*.
capi=$(ls "$work"/debs/libshmbus-c1_*.deb)
dpkg-deb -x "$capi" "$work/croot"
clib=$(ls "$work"/croot/usr/lib/$multiarch/libshmbus_c.so.1.*)
[[ $(readelf -d "$clib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p') == libshmbus_c.so.1 ]] || fail "libshmbus_c's soname is not libshmbus_c.so.1"
others=$(nm -D --defined-only "$clib" | awk '$3 !~ /^shmbus_/ && $3 != "SHMBUS_C_1" {print $3}')
[[ -z $others ]] || fail "libshmbus_c exports more than the C API: $others"
echo "libshmbus-c1 Depends: $(dpkg-deb -f "$capi" Depends)"
# python3-shmbus: the module where Debian's python3 finds it, importable from the package alone.
python=$(ls "$work"/debs/python3-shmbus_*.deb 2>/dev/null || true)
[[ -n $python ]] || fail "no python3-shmbus package"
echo "python3-shmbus Depends: $(dpkg-deb -f "$python" Depends)"
dpkg-deb -x "$python" "$work/pyroot"
[[ -f $work/pyroot/usr/lib/python3/dist-packages/shmbus/__init__.py ]] || fail "python3-shmbus lacks shmbus/__init__.py"
PYTHONPATH="$work/pyroot/usr/lib/python3/dist-packages" /usr/bin/python3 -c 'import shmbus; print("import shmbus:", shmbus.version)' \
  || fail "the packaged module does not import"
# pkg-config adds no language standard (the consumer chooses C++20 or later) and -mcx16 only on x86_64.
dpkg-deb -x "$dev" "$work/devroot"
cflags=$(grep '^Cflags:' "$work/devroot/usr/lib/$multiarch/pkgconfig/shmbus.pc")
echo "shmbus.pc $cflags"
[[ $cflags == *-std=* ]] && fail "shmbus.pc sets the language standard"
if [[ $(uname -m) == x86_64 ]]; then [[ $cflags == *-mcx16* ]] || fail "shmbus.pc lacks -mcx16"
else [[ $cflags == *-mcx16* ]] && fail "shmbus.pc has -mcx16 off x86_64"; fi

cmake -S "$src" -B "$work/lib" -G Ninja -DBUILD_SHARED_LIBS=ON -DSHMBUS_BUILD_DAEMON=OFF -DSHMBUS_BUILD_TOOLS=OFF \
      -DSHMBUS_BUILD_TESTS=OFF -DSHMBUS_BUILD_BENCH=OFF -DSHMBUS_BUILD_EXAMPLES=OFF >"$work/lib.log" 2>&1 || { cat "$work/lib.log"; fail "configure"; }
grep -qE "^(spdlog|CLI11|tomlplusplus|prometheus-cpp|nlohmann_json)_DIR" "$work/lib/CMakeCache.txt" && fail "a library-only build looked for a tool's dependency"
cmake --build "$work/lib" >/dev/null
soname=$(readelf -d "$work"/lib/bus/libshmbus.so.0.* | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
echo "soname: $soname"
[[ $soname == libshmbus.so.0 ]] || fail "soname is '$soname'"
# An application's library holds no code only the supervisor runs (bus/src/supervisor: formatting
# segments, registering slots, recovery, group administration, the archive writer).
supervisor=$(nm -DC --defined-only "$work"/lib/bus/libshmbus.so.0.* | grep -E 'shmbus::detail::(Segment::format|Segment::reserve_pages|create_group|delete_group|free_half_made_groups|seal_abandoned_claim|take_back_stalled_claim|register_producer|reserve_consumer_slot|attach_new_cursor|release_sequence_entries|settle_pending|archive::Writer)' || true)
[[ -z $supervisor ]] || fail "libshmbus.so holds supervisor code: $supervisor"
echo "libshmbus.so: no supervisor code"
