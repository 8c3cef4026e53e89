"""cffi ABI-mode binding of libpbs2p: the C declarations of native/include/pbs2p.h and the loaded library (ffi, lib)."""

from __future__ import annotations

from cffi import FFI

from .library import find_library

__all__ = ["ffi", "lib"]

# Mirrors native/include/pbs2p.h (tests/native/test_header.py checks every function of the header is declared here).
CDEF = """
typedef enum pbs2p_status {
    PBS2P_OK = 0, PBS2P_ERR_NULL = 1, PBS2P_ERR_ARGUMENT = 2, PBS2P_ERR_FORMAT = 3, PBS2P_ERR_VERSION = 4,
    PBS2P_ERR_NO_KERNEL = 5, PBS2P_ERR_NOMEM = 6, PBS2P_ERR_THREAD = 7, PBS2P_ERR_IO = 8, PBS2P_ERR_TRUNCATED = 9,
    PBS2P_ERR_GGUF = 10, PBS2P_ERR_UNSUPPORTED = 11, PBS2P_ERR_NOT_FOUND = 12, PBS2P_ERR_TYPE = 13,
    PBS2P_ERR_NOT_PBS2P = 14, PBS2P_ERR_NONFINITE = 15
} pbs2p_status;

#define PBS2P_MODEL_MAX_THREADS 256

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

/* GGUF files (gguf.c, gguf_lookup.c, gguf_layer.c) */
typedef enum pbs2p_gguf_type {
    PBS2P_GGUF_UINT8 = 0, PBS2P_GGUF_INT8 = 1, PBS2P_GGUF_UINT16 = 2, PBS2P_GGUF_INT16 = 3,
    PBS2P_GGUF_UINT32 = 4, PBS2P_GGUF_INT32 = 5, PBS2P_GGUF_FLOAT32 = 6, PBS2P_GGUF_BOOL = 7,
    PBS2P_GGUF_STRING = 8, PBS2P_GGUF_ARRAY = 9, PBS2P_GGUF_UINT64 = 10, PBS2P_GGUF_INT64 = 11,
    PBS2P_GGUF_FLOAT64 = 12
} pbs2p_gguf_type;
typedef enum pbs2p_ggml_type {
    PBS2P_GGML_F32 = 0, PBS2P_GGML_F16 = 1, PBS2P_GGML_Q4_0 = 2, PBS2P_GGML_Q4_1 = 3,
    PBS2P_GGML_Q5_0 = 6, PBS2P_GGML_Q5_1 = 7, PBS2P_GGML_Q8_0 = 8,
    PBS2P_GGML_Q2_K = 10, PBS2P_GGML_Q3_K = 11, PBS2P_GGML_Q4_K = 12, PBS2P_GGML_Q5_K = 13, PBS2P_GGML_Q6_K = 14,
    PBS2P_GGML_I8 = 24, PBS2P_GGML_I16 = 25, PBS2P_GGML_I32 = 26, PBS2P_GGML_I64 = 27, PBS2P_GGML_F64 = 28,
    PBS2P_GGML_BF16 = 30
} pbs2p_ggml_type;
typedef struct pbs2p_gguf pbs2p_gguf;
typedef struct pbs2p_gguf_info {
    uint32_t version; uint32_t alignment; uint64_t n_kv, n_tensors; uint64_t data_offset; uint64_t file_size;
} pbs2p_gguf_info;
typedef struct pbs2p_gguf_kv {
    const char *key; int32_t type; int32_t elem_type; uint64_t count; const void *data;
} pbs2p_gguf_kv;
typedef struct pbs2p_gguf_tensor {
    const char *name; int32_t type; int32_t n_dims; uint64_t ne[4]; uint64_t n_elements; uint64_t offset;
    uint64_t n_bytes; const void *data;
} pbs2p_gguf_tensor;
pbs2p_status pbs2p_gguf_open(const char *path, pbs2p_gguf **out);
pbs2p_status pbs2p_gguf_open_memory(const void *data, size_t size, pbs2p_gguf **out);
void pbs2p_gguf_close(pbs2p_gguf *f);
pbs2p_status pbs2p_gguf_get_info(const pbs2p_gguf *f, pbs2p_gguf_info *out);
int pbs2p_ggml_type_size(int32_t type, size_t *block_elems, size_t *block_bytes);
const char *pbs2p_ggml_type_name(int32_t type);
pbs2p_status pbs2p_gguf_kv_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_kv *out);
pbs2p_status pbs2p_gguf_find_key(const pbs2p_gguf *f, const char *key, pbs2p_gguf_kv *out);
pbs2p_status pbs2p_gguf_get_u32(const pbs2p_gguf *f, const char *key, uint32_t *out);
pbs2p_status pbs2p_gguf_get_i32(const pbs2p_gguf *f, const char *key, int32_t *out);
pbs2p_status pbs2p_gguf_get_u64(const pbs2p_gguf *f, const char *key, uint64_t *out);
pbs2p_status pbs2p_gguf_get_i64(const pbs2p_gguf *f, const char *key, int64_t *out);
pbs2p_status pbs2p_gguf_get_f32(const pbs2p_gguf *f, const char *key, float *out);
pbs2p_status pbs2p_gguf_get_f64(const pbs2p_gguf *f, const char *key, double *out);
pbs2p_status pbs2p_gguf_get_bool(const pbs2p_gguf *f, const char *key, int *out);
pbs2p_status pbs2p_gguf_get_str(const pbs2p_gguf *f, const char *key, const char **s, size_t *len);
pbs2p_status pbs2p_gguf_get_arr(const pbs2p_gguf *f, const char *key, int32_t elem_type, const void **data,
                                uint64_t *count);
pbs2p_status pbs2p_gguf_get_arr_str(const pbs2p_gguf *f, const char *key, uint64_t index, const char **s, size_t *len);
pbs2p_status pbs2p_gguf_tensor_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_tensor *out);
pbs2p_status pbs2p_gguf_find_tensor(const pbs2p_gguf *f, const char *name, pbs2p_gguf_tensor *out);
pbs2p_status pbs2p_gguf_layer_desc(const pbs2p_gguf *f, const char *linear_base, pbs2p_layer_desc *out);
pbs2p_status pbs2p_gguf_check_linears(const pbs2p_gguf *f, uint64_t *n_linears);
/* Models (model.c) */
#define PBS2P_KV_F16 0
#define PBS2P_KV_F32 1
typedef struct pbs2p_model_params { int32_t n_threads; int32_t n_ctx; int32_t kv_type; } pbs2p_model_params;
typedef struct pbs2p_model_info {
    char arch[16];
    int32_t n_vocab, n_ctx, n_ctx_train, n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
    int32_t n_threads; int32_t n_cached; int32_t tied; int32_t kv_type;
    uint64_t step_bytes;
} pbs2p_model_info;
typedef struct pbs2p_model pbs2p_model;
pbs2p_status pbs2p_model_load(const char *path, const pbs2p_model_params *params, pbs2p_model **out);
pbs2p_status pbs2p_model_peek(const char *path, const pbs2p_model_params *params, pbs2p_model_info *out);
pbs2p_status pbs2p_prompt_fits(const pbs2p_model_info *info, size_t n_prompt);
void pbs2p_model_free(pbs2p_model *m);
pbs2p_status pbs2p_model_get_info(const pbs2p_model *m, pbs2p_model_info *out);
pbs2p_status pbs2p_model_reset(pbs2p_model *m);
pbs2p_status pbs2p_model_eval(pbs2p_model *m, const int32_t *tokens, int32_t n_tokens, int32_t n_past,
                              float *logits, size_t logits_len);
/* Tokenizer (tokenizer.c) */
typedef struct pbs2p_tokenizer pbs2p_tokenizer;
typedef struct pbs2p_tokenizer_info {
    int32_t n_vocab, n_merges, n_added; int32_t pre; int32_t bos, eos, unk, pad; int32_t add_bos, add_eos;
} pbs2p_tokenizer_info;
pbs2p_status pbs2p_tokenizer_load(const pbs2p_gguf *f, pbs2p_tokenizer **out);
void pbs2p_tokenizer_free(pbs2p_tokenizer *t);
pbs2p_status pbs2p_tokenizer_get_info(const pbs2p_tokenizer *t, pbs2p_tokenizer_info *out);
pbs2p_status pbs2p_tokenize(const pbs2p_tokenizer *t, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n_out);
pbs2p_status pbs2p_detokenize(const pbs2p_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap,
                              size_t *n_out);
pbs2p_status pbs2p_token_to_piece(const pbs2p_tokenizer *t, int32_t id, const char **piece, size_t *len);
pbs2p_status pbs2p_model_tokenizer(const pbs2p_model *m, const pbs2p_tokenizer **out);
/* Sampler (sampler.c) */
typedef struct pbs2p_sampler_params {
    float temperature; int32_t top_k; float top_p; uint64_t seed;
} pbs2p_sampler_params;
typedef struct pbs2p_sampler pbs2p_sampler;
pbs2p_sampler_params pbs2p_sampler_default_params(void);
pbs2p_status pbs2p_sampler_new(const pbs2p_sampler_params *params, int32_t n_vocab, pbs2p_sampler **out);
void pbs2p_sampler_free(pbs2p_sampler *s);
pbs2p_status pbs2p_sampler_sample(pbs2p_sampler *s, const float *logits, size_t n, int32_t *token);
/* Generation and perplexity (generate.c, perplexity.c) */
typedef int (*pbs2p_token_callback)(void *user_data, int32_t token, const char *piece, size_t piece_len);
typedef enum pbs2p_stop_reason {
    PBS2P_STOP_LENGTH = 0, PBS2P_STOP_EOS = 1, PBS2P_STOP_CALLBACK = 2, PBS2P_STOP_CONTEXT = 3
} pbs2p_stop_reason;
typedef struct pbs2p_generate_params {
    int32_t n_predict; int32_t stop_at_eos; pbs2p_sampler_params sampler;
} pbs2p_generate_params;
typedef struct pbs2p_generate_stats {
    int32_t n_prompt; int32_t n_generated; int32_t stop_reason; double prompt_seconds; double decode_seconds;
} pbs2p_generate_stats;
pbs2p_generate_params pbs2p_generate_default_params(void);
pbs2p_status pbs2p_generate(pbs2p_model *m, const int32_t *prompt, int32_t n_prompt,
                            const pbs2p_generate_params *params, pbs2p_token_callback callback, void *user_data,
                            int32_t *out_tokens, size_t cap, pbs2p_generate_stats *stats);
typedef struct pbs2p_perplexity_result {
    double ppl; double nll; int64_t tokens; int32_t windows;
} pbs2p_perplexity_result;
pbs2p_status pbs2p_model_perplexity(pbs2p_model *m, const int32_t *tokens, size_t n, int32_t ctx, int32_t max_windows,
                                    pbs2p_perplexity_result *out);
"""

ffi = FFI()
ffi.cdef(CDEF)
lib = ffi.dlopen(str(find_library()))
