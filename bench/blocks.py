#!/usr/bin/env python3
"""Compares two copies of a PostgreSQL data directory block by block (bench/blocks.sh).

For each block size: what fixed, file-aligned blocks compressed one by one with zstd-2
would store for the whole cluster and for the blocks that changed, against zstd-3 of whole
files (in 4 MiB frames), which is what a file-level tool stores for a full backup and for
an incremental one (every changed file again).
"""
import ctypes
import os
import sys

zstd = ctypes.CDLL("libzstd.so.1")
zstd.ZSTD_compress.restype = ctypes.c_size_t
zstd.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]
OUT = ctypes.create_string_buffer(8 << 20)


def compressed(data, level):
    n = zstd.ZSTD_compress(OUT, len(OUT), data, len(data), level)
    if zstd.ZSTD_isError(n):
        raise RuntimeError("zstd failed")
    return n


def main(before, after):
    sizes = [8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10]
    full = dict.fromkeys(sizes, 0)
    changed = dict.fromkeys(sizes, 0)
    raw = files_full = files_incr = nfiles = nchanged = 0
    for root, _, files in os.walk(after):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                new = f.read()
            try:
                with open(os.path.join(before, os.path.relpath(path, after)), "rb") as f:
                    old = f.read()
            except FileNotFoundError:
                old = None
            nfiles += 1
            raw += len(new)
            whole = sum(compressed(new[i:i + (4 << 20)], 3) for i in range(0, len(new), 4 << 20))
            files_full += whole
            if old != new:
                nchanged += 1
                files_incr += whole
            for size in sizes:
                for i in range(0, len(new), size):
                    block = new[i:i + size]
                    c = compressed(block, 2)
                    full[size] += c
                    if old is None or old[i:i + size] != block:
                        changed[size] += c
    mib = lambda b: f"{b / 1048576:.1f} MiB"
    print(f"{nfiles} files ({nchanged} changed), {mib(raw)} raw; whole files with zstd-3: "
          f"full {mib(files_full)}, changed files {mib(files_incr)}")
    print()
    print("| block | full, zstd-2 per block | vs whole files | changed blocks | vs changed files |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        print(f"| {size >> 10} KiB | {mib(full[size])} | {full[size] / files_full:.3f}x "
              f"| {mib(changed[size])} | {changed[size] / files_incr:.3f}x |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
