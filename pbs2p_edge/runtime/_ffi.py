"""cffi ABI-mode binding of libpbs2p: the C declarations of native/include/pbs2p.h and the loaded library (ffi, lib)."""

from __future__ import annotations

from cffi import FFI

from .library import find_library

__all__ = ["ffi", "lib"]

# Mirrors native/include/pbs2p.h (tests/runtime/test_ffi.py checks every function of the header is declared here).
CDEF = """
typedef enum pbs2p_status {
    PBS2P_OK = 0, PBS2P_ERR_NULL = 1, PBS2P_ERR_ARGUMENT = 2, PBS2P_ERR_FORMAT = 3, PBS2P_ERR_VERSION = 4,
    PBS2P_ERR_NO_KERNEL = 5, PBS2P_ERR_NOMEM = 6, PBS2P_ERR_THREAD = 7
} pbs2p_status;

typedef struct pbs2p_layer_desc {
    int32_t format_version, rows, cols, n, m, group_size, split;
    int32_t has_salient, n_salient, has_mu, has_col_scale;
    const uint8_t *mask; const uint8_t *signs; const uint8_t *signs2; const uint8_t *salient; const uint8_t *groups;
    const uint16_t *alpha; const uint16_t *alpha2; const uint16_t *mu; const uint16_t *col_scale;
} pbs2p_layer_desc;

typedef struct pbs2p_layer_sizes {
    size_t mask_row_bytes, signs_row_bytes, signs2_row_bytes, groups_row_bytes;
    size_t salient_bytes;
    size_t groups_per_row;
    size_t regions;
    size_t alpha_count, alpha2_count, mu_count, col_scale_count;
} pbs2p_layer_sizes;

typedef struct pbs2p_layer pbs2p_layer;

const char *pbs2p_version(void);
const char *pbs2p_status_str(pbs2p_status status);
const char *pbs2p_last_error(void);
int pbs2p_mask_code_bits(int n, int m);
pbs2p_status pbs2p_layer_sizes_of(const pbs2p_layer_desc *desc, pbs2p_layer_sizes *sizes);
pbs2p_status pbs2p_layer_dequantize_ref(const pbs2p_layer_desc *desc, float *out, size_t out_len);
pbs2p_status pbs2p_layer_prepare(const pbs2p_layer_desc *desc, pbs2p_layer **out);
void pbs2p_layer_free(pbs2p_layer *layer);
int32_t pbs2p_layer_rows(const pbs2p_layer *layer);
int32_t pbs2p_layer_cols(const pbs2p_layer *layer);
size_t pbs2p_layer_nbytes(const pbs2p_layer *layer);
pbs2p_status pbs2p_gemv(const pbs2p_layer *layer, const float *x, size_t x_len, float *y, size_t y_len, int n_threads);
pbs2p_status pbs2p_gemm(const pbs2p_layer *layer, const float *X, size_t n_tokens, size_t x_len,
                        float *Y, size_t y_len, int n_threads);
const char *pbs2p_kernel_name(void);
size_t pbs2p_kernel_variants(const char **names, size_t cap);
int pbs2p_kernel_available(const char *name);
pbs2p_status pbs2p_kernel_select(const char *name);
"""

ffi = FFI()
ffi.cdef(CDEF)
lib = ffi.dlopen(str(find_library()))
