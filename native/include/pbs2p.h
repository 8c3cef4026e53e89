/* pbs2p.h — public C API of libpbs2p: the packed layer format (docs/FORMAT.md) and its bit-sparse kernels.
 *
 * Conventions
 *  1. Every function that can fail returns a pbs2p_status; none aborts or exits. After a failure,
 *     pbs2p_last_error() gives a one-line, thread-local message with the details.
 *  2. A packed layer is described by pbs2p_layer_desc: the FORMAT.md per-layer metadata plus pointers
 *     to its little-endian streams, exactly as stored on disk. The library never writes them.
 *  3. pbs2p_layer_prepare() validates a descriptor and builds an in-memory, CPU-friendly copy
 *     (bit planes + float32 coefficients); it is never written to disk. Free it with pbs2p_layer_free().
 *  4. pbs2p_gemv / pbs2p_gemm run the kernel variant chosen at run time (AVX-512, AVX2 or the scalar
 *     reference); the environment variable PBS2P_KERNEL=ref|avx2|avx512|neon forces one.
 *  5. Results do not depend on n_threads: every output element is computed by one thread, in one order.
 *     n_threads is an upper bound; products too small to gain from threads use fewer.
 *  6. gemm is batch-invariant (a token's output does not depend on the other tokens); gemv and gemm may
 *     differ in the last bits (different summation order), both within the documented tolerance.
 */
#ifndef PBS2P_H
#define PBS2P_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(PBS2P_BUILDING_SHARED)
#define PBS2P_API __declspec(dllexport)
#elif defined(__GNUC__)
#define PBS2P_API __attribute__((visibility("default")))
#else
#define PBS2P_API
#endif

#define PBS2P_FORMAT_VERSION 1
#define PBS2P_VERSION_STRING "0.1.0"

typedef enum pbs2p_status {
    PBS2P_OK = 0,
    PBS2P_ERR_NULL = 1,          /* a required pointer argument is NULL */
    PBS2P_ERR_ARGUMENT = 2,      /* an argument is out of range or sizes disagree */
    PBS2P_ERR_FORMAT = 3,        /* the packed streams are corrupt (bad mask code, group index, salient count) */
    PBS2P_ERR_VERSION = 4,       /* unsupported packed format version */
    PBS2P_ERR_NO_KERNEL = 5,     /* the requested kernel variant is not compiled in or not supported by this CPU */
    PBS2P_ERR_NOMEM = 6,         /* an allocation failed */
    PBS2P_ERR_THREAD = 7         /* a worker thread could not be started */
} pbs2p_status;

/* Per-layer metadata (FORMAT.md section 7) and stream pointers (sections 2-5).
 * R = rows, K = cols, G = ceil(K / group_size), nreg = split + has_salient.
 * Bit streams: bit t is bit (t mod 8) of byte (t div 8); each row is padded to a whole byte. */
typedef struct pbs2p_layer_desc {
    int32_t format_version;     /* PBS2P_FORMAT_VERSION */
    int32_t rows;               /* R >= 1 */
    int32_t cols;               /* K >= 1, multiple of m */
    int32_t n;                  /* kept per M-group, 1..m */
    int32_t m;                  /* 2, 4, 8 or 16 */
    int32_t group_size;         /* columns per scale group, >= 1 */
    int32_t split;              /* S, non-salient regions 1..S, 1..255 */
    int32_t has_salient;        /* 0/1: region 0 exists */
    int32_t n_salient;          /* popcount of the salient stream (0 when !has_salient) */
    int32_t has_mu;             /* 0/1 */
    int32_t has_col_scale;      /* 0/1 */
    const uint8_t *mask;        /* (R, ceil(K/m * w_mask / 8)); NULL when n == m */
    const uint8_t *signs;       /* (R, ceil(K/m * n / 8)); bit per kept element, 1 = +1 */
    const uint8_t *signs2;      /* (R, ceil(n_salient / 8)); bit per salient column; NULL without salient */
    const uint8_t *salient;     /* (ceil(K / 8),); bit j = column j is salient; NULL without salient */
    const uint8_t *groups;      /* (R, ceil(K/m * n * w_group / 8)); NULL when split < 2 */
    const uint16_t *alpha;      /* float16 bits (nreg, R, G) */
    const uint16_t *alpha2;     /* float16 bits (R, G); NULL without salient */
    const uint16_t *mu;         /* float16 bits (nreg, R, G); NULL unless has_mu */
    const uint16_t *col_scale;  /* float16 bits (nreg, K); NULL unless has_col_scale */
} pbs2p_layer_desc;

/* Byte sizes of each stream of a layer (0 for a stream the layer does not store). */
typedef struct pbs2p_layer_sizes {
    size_t mask_row_bytes, signs_row_bytes, signs2_row_bytes, groups_row_bytes;
    size_t salient_bytes;
    size_t groups_per_row;      /* G */
    size_t regions;             /* nreg */
    size_t alpha_count, alpha2_count, mu_count, col_scale_count; /* float16 elements */
} pbs2p_layer_sizes;

typedef struct pbs2p_layer pbs2p_layer; /* opaque prepared layer */

PBS2P_API const char *pbs2p_version(void);
PBS2P_API const char *pbs2p_status_str(pbs2p_status status);
/* Details of the last failure on the calling thread ("" if none). */
PBS2P_API const char *pbs2p_last_error(void);

/* Bits of one N:M mask code, ceil(log2 C(m, n)) (0 when n == m); -1 for an invalid (n, m). */
PBS2P_API int pbs2p_mask_code_bits(int n, int m);

/* Check the metadata of `desc` and fill `sizes` (may be NULL); stream pointers are not read. */
PBS2P_API pbs2p_status pbs2p_layer_sizes_of(const pbs2p_layer_desc *desc, pbs2p_layer_sizes *sizes);

/* W_hat (rows, cols) row-major float32 into out[out_len], in the exact FORMAT.md section 6 order.
 * Validates the streams (mask codes, group indices, salient count). */
PBS2P_API pbs2p_status pbs2p_layer_dequantize_ref(const pbs2p_layer_desc *desc, float *out, size_t out_len);

/* Build the in-memory repacked layer; the streams of `desc` may be released afterwards. */
PBS2P_API pbs2p_status pbs2p_layer_prepare(const pbs2p_layer_desc *desc, pbs2p_layer **out);
PBS2P_API void pbs2p_layer_free(pbs2p_layer *layer);
PBS2P_API int32_t pbs2p_layer_rows(const pbs2p_layer *layer);
PBS2P_API int32_t pbs2p_layer_cols(const pbs2p_layer *layer);
/* Bytes of the prepared layout a gemv reads (bit planes + coefficients + column scales). */
PBS2P_API size_t pbs2p_layer_nbytes(const pbs2p_layer *layer);

/* y (rows,) = W_hat x, x (cols,). */
PBS2P_API pbs2p_status pbs2p_gemv(const pbs2p_layer *layer, const float *x, size_t x_len,
                                  float *y, size_t y_len, int n_threads);
/* Y (n_tokens, rows) = X W_hat^T, X (n_tokens, cols), both row-major. */
PBS2P_API pbs2p_status pbs2p_gemm(const pbs2p_layer *layer, const float *X, size_t n_tokens, size_t x_len,
                                  float *Y, size_t y_len, int n_threads);

/* Kernel variants. Names: "ref", "avx2", "avx512", "neon". */
/* Name of the variant gemv/gemm use now; NULL when PBS2P_KERNEL names one that is unavailable. */
PBS2P_API const char *pbs2p_kernel_name(void);
/* Number of variants compiled into this library; names[0..min(count, cap)) receive their names. */
PBS2P_API size_t pbs2p_kernel_variants(const char **names, size_t cap);
/* 1 when `name` is compiled in and this CPU runs it, else 0. */
PBS2P_API int pbs2p_kernel_available(const char *name);
/* Force a variant for this process (NULL: back to PBS2P_KERNEL or automatic choice). */
PBS2P_API pbs2p_status pbs2p_kernel_select(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* PBS2P_H */
