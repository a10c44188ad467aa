#!/bin/sh
# The PAM module's linker: ld.gold, with libstdc++ taken from its static archive.
#
# -static-stdlib links the Swift runtime into the module but still names the shared
# libstdc++ (the runtime needs 23 of its symbols). Loading libstdc++.so.6 into sudo or
# pamtester costs about 4 M instructions of symbol lookups per login, two thirds of the
# module's whole cost; the 23 symbols from libstdc++.a cost 200 KB and nothing at load.
# swiftc puts user flags after its own -lstdc++, so the swap is done here, by clang's
# -fuse-ld. Every other argument is passed through unchanged.
for arg do
    shift
    if [ "$arg" = "-lstdc++" ]; then set -- "$@" "-l:libstdc++.a"; else set -- "$@" "$arg"; fi
done
exec ld.gold "$@"
