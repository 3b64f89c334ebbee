#!/usr/bin/env bash
# Static analysis of evgate's own code (docs/reliability.md, "Static analysis"):
#
#   scripts/lint.sh              clang-tidy-14 with the root .clang-tidy on every translation unit
#                                of reactor/, gateway/, admin/ and daemon/, then cppcheck on every
#                                project file (tests/ and bench/ included). What CI may run.
#   scripts/lint.sh REGEX...     clang-tidy only, on the translation units whose path matches a
#                                REGEX (e.g. scripts/lint.sh gateway/flow.cc), for a quick check
#
# Exits non-zero on any finding: .clang-tidy makes every warning an error, and cppcheck's
# justified findings are in scripts/cppcheck-suppressions.txt (or inline, with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/setup.sh

# compile_commands.json comes from the release preset; clang-tidy needs the generated protobuf and
# gRPC headers that admin/ includes, so build that target only, not the whole project.
preset=release
build=build/$preset
if [ ! -f "$build/compile_commands.json" ]; then
  cmake --preset "$preset"
fi
cmake --build --preset "$preset" --target evgate_admin_proto

jobs=$(nproc)

# clang-tidy: the product's translation units. Generated code (build/) is not ours; tests/ and
# bench/ are left to cppcheck and the compilers' -Werror, since clang-tidy over their GoogleTest and
# gRPC-heavy units would double the run time.
if [ $# -gt 0 ]; then
  files=("$@")
else
  files=("^$root/(reactor|gateway|admin|daemon)/")
fi
echo "== clang-tidy-14 (${files[*]})"
run-clang-tidy-14 -clang-tidy-binary clang-tidy-14 -p "$build" -j "$jobs" -quiet "${files[@]}"
if [ $# -gt 0 ]; then
  exit 0
fi

# cppcheck: every project file in compile_commands.json (build/ excluded). The generated protobuf
# headers need protobuf's port macros to parse (port_def.inc, forced in) and the byte order it
# checks for; the standard, POSIX and GoogleTest libraries tell cppcheck about their functions.
echo "== cppcheck"
mkdir -p "$build/cppcheck"
cppcheck --project="$build/compile_commands.json" -i build \
  --enable=warning,performance,portability --inline-suppr \
  --suppressions-list=scripts/cppcheck-suppressions.txt --library=posix --library=googletest \
  --include=/usr/include/google/protobuf/port_def.inc \
  -D__ORDER_LITTLE_ENDIAN__=1234 -D__BYTE_ORDER__=1234 \
  --cppcheck-build-dir="$build/cppcheck" -j "$jobs" -q --error-exitcode=1 \
  --template='{file}:{line}: {severity}: {message} [{id}]'
echo "lint: clean"
