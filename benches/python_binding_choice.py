#!/usr/bin/env python3
"""Why ubdcc_local uses PyO3: the same top-10 read through each way of binding Python.

Compares, per call, building ``[[price, qty], ...]`` for the top 10 asks of a pattern book:
- ``ubdcc_local`` (PyO3, lists built in Rust),
- cffi in ABI mode over ``libubdcc_ffi.so`` (list built in Python from the C array),
- ctypes over the same library.

Needs ``pip install cffi``, a release build (``cargo build --release -p ubdcc-ffi --lib --bin ubdcc``)
and ``ubdcc_local`` installed. Prints the median per call of 200 batches of 1000 calls.
"""
import ctypes
import pathlib
import statistics
import subprocess
import sys
import time

import cffi
import ubdcc_local

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIB = ROOT / "target/release/libubdcc_ffi.so"
BIN = ROOT / "target/release/ubdcc"
CLUSTER = "bindingchoice"


def median_ns(call, batches=200, per_batch=1000):
    samples = []
    for _ in range(batches):
        started = time.perf_counter_ns()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter_ns() - started) / per_batch)
    return statistics.median(samples)


def main():
    writer = subprocess.Popen([str(BIN), "shm", "test-pattern", "--cluster", CLUSTER, "--books", "1", "--rate", "100"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().startswith("ready")
        reader = ubdcc_local.Reader(CLUSTER)

        ffi = cffi.FFI()
        ffi.cdef("""
            typedef struct { double price; double quantity; } ubdcc_level_t;
            typedef struct ubdcc_reader_t ubdcc_reader_t;
            int ubdcc_reader_open(const char *cluster, ubdcc_reader_t **out_reader);
            int ubdcc_get_asks(ubdcc_reader_t *reader, const char *exchange, const char *market,
                               const int64_t *limit_count, const double *threshold_volume,
                               ubdcc_level_t *levels, size_t capacity, size_t *out_count, void *out_info);
        """)
        lib = ffi.dlopen(str(LIB))
        handle = ffi.new("ubdcc_reader_t **")
        assert lib.ubdcc_reader_open(CLUSTER.encode(), handle) == 0
        levels = ffi.new("ubdcc_level_t[10]")
        count = ffi.new("size_t *")
        limit = ffi.new("int64_t *", 10)

        def cffi_read():
            lib.ubdcc_get_asks(handle[0], b"binance.com", b"PATTERN0", limit, ffi.NULL, levels, 10, count, ffi.NULL)
            return [[levels[i].price, levels[i].quantity] for i in range(count[0])]

        class Level(ctypes.Structure):
            _fields_ = [("price", ctypes.c_double), ("quantity", ctypes.c_double)]

        clib = ctypes.CDLL(str(LIB))
        creader = ctypes.c_void_p()
        assert clib.ubdcc_reader_open(CLUSTER.encode(), ctypes.byref(creader)) == 0
        clevels = (Level * 10)()
        ccount = ctypes.c_size_t()
        climit = ctypes.c_int64(10)
        get_asks = clib.ubdcc_get_asks
        get_asks.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64),
                             ctypes.c_void_p, ctypes.POINTER(Level), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                             ctypes.c_void_p]

        def ctypes_read():
            get_asks(creader, b"binance.com", b"PATTERN0", ctypes.byref(climit), None, clevels, 10,
                     ctypes.byref(ccount), None)
            return [[clevels[i].price, clevels[i].quantity] for i in range(ccount.value)]

        expected = reader.get_asks("binance.com", "PATTERN0", limit_count=10)
        assert len(cffi_read()) == len(ctypes_read()) == len(expected) == 10
        print("binding                      median ns per top-10 read")
        print(f"PyO3 (ubdcc_local)           {median_ns(lambda: reader.get_asks('binance.com', 'PATTERN0', limit_count=10)):8.0f}")
        print(f"cffi ABI mode + Python list  {median_ns(cffi_read):8.0f}")
        print(f"ctypes + Python list         {median_ns(ctypes_read):8.0f}")
    finally:
        writer.kill()
        writer.wait()
        for leftover in pathlib.Path("/dev/shm").glob(f"ubdcc.{CLUSTER}.*"):
            leftover.unlink()


if __name__ == "__main__":
    sys.exit(main())
