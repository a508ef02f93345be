# Sourced by engine.sh and unet.sh: which instruction set the comparison measures, on both sides.
#   ISA=native (default): our build for this CPU (Package.swift's -target-cpu native), PyTorch as it is.
#   ISA=avx2: the AVX2 + FMA code that a CPU without AVX-512 runs (Zen 3, Intel client chips), measured on any
#             x86-64 CPU that has AVX2: our build with DIFFUSE_TARGET_CPU=haswell (16 vector registers, no AVX-512)
#             in its own scratch path (default .build-avx2), PyTorch's kernels, oneDNN and MKL (its matrix products)
#             held to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS), raw OpenBLAS on its
#             Haswell kernel.
# Debian 12's OpenBLAS (0.3.21) does not know CPUs newer than it and falls back to its Prescott kernel (SSE3, about a
# fifth of the speed of its AVX2 one): where it would, the raw OpenBLAS of engine.sh gets the kernel of the vector
# instructions the CPU has (OPENBLAS_CORETYPE), and says so.
case "${ISA:=native}" in
    native) ;;
    avx2)
        export DIFFUSE_TARGET_CPU=haswell ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
        export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
        SCRATCH=${SCRATCH:-.build-avx2}
        ;;
    *) echo "$(basename "$0"): ISA must be native or avx2, not '$ISA'" >&2; exit 1 ;;
esac
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    core=$("${PYTHON:-python3}" -c 'import ctypes, ctypes.util
lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())' 2>/dev/null || true)
    flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
    case "$core" in
        Prescott|Core2|Nehalem)
            if [[ " $flags " == *" avx512f "* ]]; then export OPENBLAS_CORETYPE=SkylakeX
            elif [[ " $flags " == *" avx2 "* ]]; then export OPENBLAS_CORETYPE=Haswell; fi
            [ -n "${OPENBLAS_CORETYPE:-}" ] && echo "OpenBLAS picks its $core kernel on this CPU: raw OpenBLAS runs its $OPENBLAS_CORETYPE kernel (OPENBLAS_CORETYPE)" >&2
            ;;
    esac
fi
