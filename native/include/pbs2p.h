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
    PBS2P_ERR_THREAD = 7,        /* a worker thread could not be started */
    PBS2P_ERR_IO = 8,            /* a file cannot be opened, measured or memory-mapped */
    PBS2P_ERR_TRUNCATED = 9,     /* a file ends before an item its header places in it */
    PBS2P_ERR_GGUF = 10,         /* not a well-formed GGUF file (magic, counts, names, dims, offsets) */
    PBS2P_ERR_UNSUPPORTED = 11,  /* a well-formed GGUF of a version or tensor type this library does not read */
    PBS2P_ERR_NOT_FOUND = 12,    /* no key, tensor or linear of that name */
    PBS2P_ERR_TYPE = 13,         /* a key or tensor of another type than the one asked for */
    PBS2P_ERR_NOT_PBS2P = 14,    /* a valid GGUF file without pbs2p.* keys */
    PBS2P_ERR_NONFINITE = 15     /* the model's outputs hold NaN or Inf (non-finite weights or norms in the file) */
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

/* ==== GGUF files (gguf.c, gguf_lookup.c, gguf_layer.c) ==========================================
 *
 * A GGUF file is opened once, memory-mapped read-only and validated completely before any use; every
 * later lookup reads only what was validated, so no call reads outside the file. Layout (v2 and v3,
 * little-endian), as the reader checks it:
 *  1. magic "GGUF" (4 bytes).
 *  2. version u32: 2 or 3 (v1 and big-endian files: PBS2P_ERR_UNSUPPORTED).
 *  3. n_tensors u64 (<= PBS2P_GGUF_MAX_TENSORS), n_kv u64 (<= PBS2P_GGUF_MAX_KV); both must fit in the
 *     bytes left (a key-value takes >= 14 bytes, a tensor info >= 33) before anything is allocated.
 *  4. n_kv key-values: key, value type u32 (pbs2p_gguf_type), value. A string is a u64 byte length
 *     (<= PBS2P_GGUF_MAX_STRING) then the bytes, no NUL; a bool is one byte 0 or 1; an array is an element
 *     type u32 (never ARRAY: nested arrays are refused), a u64 count (<= PBS2P_GGUF_MAX_ARRAY), the elements.
 *     Keys are unique, 1..PBS2P_GGUF_MAX_NAME bytes, without NUL bytes.
 *  5. n_tensors tensor infos: name (a string, unique, same rules as keys), n_dims u32 (1..4),
 *     ne[n_dims] u64 (ne[0] is the contiguous dimension, i.e. the numpy shape reversed; each >= 1, their
 *     product <= INT64_MAX, ne[0] a multiple of the type's block), ggml type u32 (one of pbs2p_ggml_type,
 *     else PBS2P_ERR_UNSUPPORTED), offset u64 from the start of the data section (a multiple of the alignment).
 *  6. Zero padding to a multiple of general.alignment (u32, a power of two; 32 when the key is absent).
 *  7. Data section: each tensor's n_bytes = ne[0]*...*ne[3] / block * block_bytes lie inside the file, and
 *     no two tensors overlap.
 * Errors: PBS2P_ERR_TRUNCATED when the file ends before an item the header places in it (including
 * tensor data past the end), PBS2P_ERR_GGUF for any other malformed item, with the byte offset in
 * pbs2p_last_error(). Strings and array data point into the mapping and may be unaligned: copy them.
 * A file that another process truncates while it is mapped may still raise SIGBUS (POSIX mmap).
 * An open handle is never modified: several threads may read it at once. */

#define PBS2P_GGUF_DEFAULT_ALIGNMENT 32
#define PBS2P_GGUF_MAX_DIMS 4
#define PBS2P_GGUF_MAX_NAME 1024                        /* bytes of a key or tensor name */
#define PBS2P_GGUF_MAX_KV (1u << 20)                    /* key-values per file */
#define PBS2P_GGUF_MAX_TENSORS (1u << 20)               /* tensors per file */
#define PBS2P_GGUF_MAX_STRING ((uint64_t)1 << 30)       /* bytes of one string value */
#define PBS2P_GGUF_MAX_ARRAY ((uint64_t)1 << 32)        /* elements of one array value */

/* GGUF value types (the numbering of the GGUF specification). */
typedef enum pbs2p_gguf_type {
    PBS2P_GGUF_UINT8 = 0, PBS2P_GGUF_INT8 = 1, PBS2P_GGUF_UINT16 = 2, PBS2P_GGUF_INT16 = 3,
    PBS2P_GGUF_UINT32 = 4, PBS2P_GGUF_INT32 = 5, PBS2P_GGUF_FLOAT32 = 6, PBS2P_GGUF_BOOL = 7,
    PBS2P_GGUF_STRING = 8, PBS2P_GGUF_ARRAY = 9, PBS2P_GGUF_UINT64 = 10, PBS2P_GGUF_INT64 = 11,
    PBS2P_GGUF_FLOAT64 = 12
} pbs2p_gguf_type;

/* The ggml tensor types this reader accepts (ggml's ids; every other id is refused). pbs2p files use
 * F32, F16, I8 and Q8_0; the others let a stock llama.cpp file be opened and listed. */
typedef enum pbs2p_ggml_type {
    PBS2P_GGML_F32 = 0, PBS2P_GGML_F16 = 1, PBS2P_GGML_Q4_0 = 2, PBS2P_GGML_Q4_1 = 3,
    PBS2P_GGML_Q5_0 = 6, PBS2P_GGML_Q5_1 = 7, PBS2P_GGML_Q8_0 = 8,
    PBS2P_GGML_Q2_K = 10, PBS2P_GGML_Q3_K = 11, PBS2P_GGML_Q4_K = 12, PBS2P_GGML_Q5_K = 13, PBS2P_GGML_Q6_K = 14,
    PBS2P_GGML_I8 = 24, PBS2P_GGML_I16 = 25, PBS2P_GGML_I32 = 26, PBS2P_GGML_I64 = 27, PBS2P_GGML_F64 = 28,
    PBS2P_GGML_BF16 = 30
} pbs2p_ggml_type;

typedef struct pbs2p_gguf pbs2p_gguf; /* opaque: an open, validated GGUF file */

typedef struct pbs2p_gguf_info {
    uint32_t version;      /* 2 or 3 */
    uint32_t alignment;    /* general.alignment, or 32 */
    uint64_t n_kv, n_tensors;
    uint64_t data_offset;  /* file offset of the data section */
    uint64_t file_size;    /* bytes */
} pbs2p_gguf_info;

typedef struct pbs2p_gguf_kv {
    const char *key;       /* NUL-terminated, owned by the file handle */
    int32_t type;          /* pbs2p_gguf_type of the value */
    int32_t elem_type;     /* arrays: the elements' type; otherwise == type */
    uint64_t count;        /* arrays: elements; strings: bytes; scalars: 1 */
    const void *data;      /* scalar: its little-endian bytes; string: its bytes (no NUL); array of fixed-size
                              elements: the first one; array of strings: NULL (see pbs2p_gguf_get_arr_str) */
} pbs2p_gguf_kv;

typedef struct pbs2p_gguf_tensor {
    const char *name;      /* NUL-terminated, owned by the file handle */
    int32_t type;          /* pbs2p_ggml_type */
    int32_t n_dims;        /* 1..4 */
    uint64_t ne[PBS2P_GGUF_MAX_DIMS]; /* ne[0] contiguous (numpy shape reversed); 1 beyond n_dims */
    uint64_t n_elements;
    uint64_t offset;       /* file offset of the data */
    uint64_t n_bytes;
    const void *data;      /* n_bytes inside the mapping, aligned to `alignment` from the mapping's start */
} pbs2p_gguf_tensor;

/* Map `path` read-only and validate it (see the layout above); *out = NULL on failure. */
PBS2P_API pbs2p_status pbs2p_gguf_open(const char *path, pbs2p_gguf **out);
/* Same over `size` bytes in memory (not copied: they must outlive the handle). */
PBS2P_API pbs2p_status pbs2p_gguf_open_memory(const void *data, size_t size, pbs2p_gguf **out);
/* Unmap and free; NULL is ignored. Every pointer obtained from the handle dies with it. */
PBS2P_API void pbs2p_gguf_close(pbs2p_gguf *f);
PBS2P_API pbs2p_status pbs2p_gguf_get_info(const pbs2p_gguf *f, pbs2p_gguf_info *out);

/* 1 when the reader accepts ggml type `type` (then *block_elems / *block_bytes, each may be NULL), else 0. */
PBS2P_API int pbs2p_ggml_type_size(int32_t type, size_t *block_elems, size_t *block_bytes);
/* "F32", "Q4_1", ... for any ggml type id this library knows (accepted or not), else NULL. */
PBS2P_API const char *pbs2p_ggml_type_name(int32_t type);

/* Key-values in file order (index < n_kv), or by key (PBS2P_ERR_NOT_FOUND when absent). */
PBS2P_API pbs2p_status pbs2p_gguf_kv_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_kv *out);
PBS2P_API pbs2p_status pbs2p_gguf_find_key(const pbs2p_gguf *f, const char *key, pbs2p_gguf_kv *out);
/* Typed getters: PBS2P_ERR_NOT_FOUND when the key is absent, PBS2P_ERR_TYPE when its value has another
 * type (no conversions). Strings are not NUL-terminated: (*s, *len). */
PBS2P_API pbs2p_status pbs2p_gguf_get_u32(const pbs2p_gguf *f, const char *key, uint32_t *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_i32(const pbs2p_gguf *f, const char *key, int32_t *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_u64(const pbs2p_gguf *f, const char *key, uint64_t *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_i64(const pbs2p_gguf *f, const char *key, int64_t *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_f32(const pbs2p_gguf *f, const char *key, float *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_f64(const pbs2p_gguf *f, const char *key, double *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_bool(const pbs2p_gguf *f, const char *key, int *out);
PBS2P_API pbs2p_status pbs2p_gguf_get_str(const pbs2p_gguf *f, const char *key, const char **s, size_t *len);
/* An array whose elements have type `elem_type`: *count elements; *data the first one (possibly unaligned),
 * NULL for strings. */
PBS2P_API pbs2p_status pbs2p_gguf_get_arr(const pbs2p_gguf *f, const char *key, int32_t elem_type,
                                          const void **data, uint64_t *count);
/* Element `index` of an array of strings (PBS2P_ERR_ARGUMENT when index >= count). */
PBS2P_API pbs2p_status pbs2p_gguf_get_arr_str(const pbs2p_gguf *f, const char *key, uint64_t index,
                                              const char **s, size_t *len);

/* Tensors in file order (index < n_tensors), or by name (PBS2P_ERR_NOT_FOUND when absent). */
PBS2P_API pbs2p_status pbs2p_gguf_tensor_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_tensor *out);
PBS2P_API pbs2p_status pbs2p_gguf_find_tensor(const pbs2p_gguf *f, const char *name, pbs2p_gguf_tensor *out);

/* The descriptor of compressed linear `linear_base` (e.g. "blk.0.attn_q", an entry of pbs2p.linear.names)
 * from the pbs2p.* keys and the `<base>.pbs2p.<array>` tensors (docs/GGUF.md §4, §6). Checks
 * pbs2p.format_version, the metadata (pbs2p_layer_sizes_of), that exactly the arrays the metadata requires
 * exist, with their types (I8 streams, F16 scales) and shapes, and the salient popcount. The stream pointers
 * point into the mapping: valid until pbs2p_gguf_close. PBS2P_ERR_NOT_PBS2P for a GGUF without
 * pbs2p.format_version, PBS2P_ERR_VERSION for another format version, PBS2P_ERR_NOT_FOUND for a name not in
 * pbs2p.linear.names, PBS2P_ERR_FORMAT for metadata and tensors that disagree, PBS2P_ERR_UNSUPPORTED for a
 * linear of another tier than the packed one (pbs2p.linear.tier, docs/FORMAT.md §10: it has no packed arrays). */
PBS2P_API pbs2p_status pbs2p_gguf_layer_desc(const pbs2p_gguf *f, const char *linear_base, pbs2p_layer_desc *out);
/* Check a whole pbs2p file: the entries of pbs2p.linear.names are unique and each gives a valid descriptor
 * (pbs2p_gguf_layer_desc) or, for a linear of a grid tier, a valid tensor of its tier, and every
 * "<base>.pbs2p.<array>" tensor belongs to a listed linear.
 * *n_linears (may be NULL) = the number of linears. */
PBS2P_API pbs2p_status pbs2p_gguf_check_linears(const pbs2p_gguf *f, uint64_t *n_linears);


/* ==== Models (model.c, model_forward.c, model_math.c, model_threads.c; loading: model_load.c, model_read.c,
 * model_llama.c, model_opt.c) ==============================================================================
 *
 * A decoder run from a pbs2p GGUF file (docs/GGUF.md), general.architecture "llama", "qwen2" or "opt":
 * - llama (Llama, Mistral) and qwen2, their keys under "llama." or "qwen2.": token embedding (F16 or Q8_0 rows,
 *   dequantized on the fly), per block RMSNorm -> attention (GQA, RoPE rotate-half pairing as pbs2p.rope.pairing =
 *   "half" says, causal softmax over a KV cache, over the last <arch>.attention.sliding_window positions when the
 *   file has that key) -> residual -> RMSNorm -> SwiGLU MLP -> residual, final RMSNorm. RoPE scaling none,
 *   "linear" or "llama3" (rope_freqs.weight).
 * - opt (OPTForCausalLM): token embedding + learned position (row n_past + i + opt.position_offset of
 *   position_embd.weight), per block LayerNorm (weight, bias) -> attention (q scaled by head_dim^-0.5 after
 *   q_proj, no RoPE, causal softmax over the KV cache) -> residual -> LayerNorm -> fc1 -> activation (relu,
 *   gelu, gelu_new / gelu_pytorch_tanh) -> fc2 -> residual, final LayerNorm when the file has output_norm;
 *   opt.layer_norm_before = false (post-LN: the norm after each residual) is supported too. OPT with
 *   word_embed_proj_dim != hidden size (project_in / project_out) is PBS2P_ERR_UNSUPPORTED.
 * Head = output.weight or the tied token_embd. Other architectures: PBS2P_ERR_UNSUPPORTED.
 * Every compressed linear runs through a prepared layer (pbs2p_gemv for one token, pbs2p_gemm for several);
 * F32 biases `<base>.bias` are added when present. Activations, the KV cache and the head's dot products are
 * float32. Every decoder-block linear must be a pbs2p packed linear.
 * pbs2p_model_load validates everything (keys present and consistent with the tensor shapes, n_ctx bounds, OPT's
 * position_embd rows >= context_length + position_offset, a size guard before any large allocation) and never
 * aborts. A model holds no global state; one model must not be used by two threads at once (different models
 * may). The file stays mapped until pbs2p_model_free. Below, <arch>.context_length is the context_length key under
 * general.architecture's prefix. */

#define PBS2P_MODEL_DEFAULT_CTX 2048                    /* n_ctx 0: min(this, <arch>.context_length) */
#define PBS2P_MODEL_MAX_THREADS 256
#define PBS2P_MODEL_MAX_STATE_BYTES ((uint64_t)1 << 36) /* KV cache + scratch of a full-context eval: refuse above */

#define PBS2P_KV_F16 0 /* the KV cache's keys and values rounded to float16 (llama.cpp's default): half the memory */
#define PBS2P_KV_F32 1 /* float32: the keys and values exactly as computed */

typedef struct pbs2p_model_params {
    int32_t n_threads;  /* 1..PBS2P_MODEL_MAX_THREADS; 0 = 1 */
    int32_t n_ctx;      /* positions the KV cache holds, 1..<arch>.context_length; 0 = PBS2P_MODEL_DEFAULT_CTX rule */
    int32_t kv_type;    /* PBS2P_KV_F16 (0, the default) or PBS2P_KV_F32 */
} pbs2p_model_params;

typedef struct pbs2p_model_info {
    char arch[16];      /* general.architecture, NUL-terminated ("llama", "qwen2" or "opt") */
    int32_t n_vocab, n_ctx, n_ctx_train, n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
    int32_t n_threads;
    int32_t n_cached;   /* positions 0..n_cached-1 of the KV cache hold valid keys and values */
    int32_t tied;       /* 1 when the head is token_embd (no output.weight) */
    int32_t kv_type;    /* PBS2P_KV_F16 or PBS2P_KV_F32 */
    uint64_t step_bytes; /* weight bytes one decode step reads, as the model holds them: packed linears' prepared
                          * planes and coefficients (pbs2p_layer_nbytes), every other linear, the head and one
                          * embedding row as the file stores them, norms and biases; the KV cache not counted.
                          * 0 from pbs2p_model_peek (nothing is prepared). */
} pbs2p_model_info;

typedef struct pbs2p_model pbs2p_model; /* opaque */

/* Open, validate and prepare the model at `path` (params NULL: defaults); *out = NULL on failure. */
PBS2P_API pbs2p_status pbs2p_model_load(const char *path, const pbs2p_model_params *params, pbs2p_model **out);
/* What pbs2p_model_load(path, params) would report in pbs2p_model_get_info (n_cached 0), after its checks of the
 * file, the hyper-parameters, the vocabulary and params, without reading or preparing any weight (milliseconds, where
 * a large model's load takes seconds): check inputs against the model (a prompt against n_ctx) before loading it. A
 * file that passes may still fail to load on its weights. */
PBS2P_API pbs2p_status pbs2p_model_peek(const char *path, const pbs2p_model_params *params, pbs2p_model_info *out);
/* NULL is ignored. */
PBS2P_API void pbs2p_model_free(pbs2p_model *m);
PBS2P_API pbs2p_status pbs2p_model_get_info(const pbs2p_model *m, pbs2p_model_info *out);
/* Forget the KV cache (n_cached = 0). */
PBS2P_API pbs2p_status pbs2p_model_reset(pbs2p_model *m);
/* Run tokens[0..n_tokens) at positions n_past..n_past+n_tokens-1, reading cached positions 0..n_past-1 and
 * writing the new keys and values into the cache (afterwards n_cached = n_past + n_tokens). Needs
 * 0 <= n_past <= n_cached (rewinding is allowed), n_past + n_tokens <= n_ctx, every id < n_vocab.
 * logits: logits_len == n_tokens * n_vocab gives every token's row (row-major), logits_len == n_vocab only the
 * last token's (the head is then computed for that token alone). After an argument error nothing changes;
 * after a failure during the run (memory, threads) n_cached = n_past. */
PBS2P_API pbs2p_status pbs2p_model_eval(pbs2p_model *m, const int32_t *tokens, int32_t n_tokens, int32_t n_past,
                                        float *logits, size_t logits_len);

/* ==== Tokenizer (tokenizer.c, tokenizer_unicode.c, tokenizer_spm.c) ================================
 *
 * The tokenizer of a GGUF file's tokenizer.ggml.* keys (docs/GGUF.md §5), encoding and decoding as Hugging Face
 * tokenizers do. Two kinds:
 * - tokenizer.ggml.model "gpt2", byte-level BPE (GPT-2 style); tokenizer.ggml.pre "gpt-2", "default" (the GPT-2
 *   split regex), "smollm" (every Unicode number isolated first, then the GPT-2 regex), "llama-bpe" (Llama-3's
 *   split regex: case-insensitive contractions, one non-letter before a word, numbers in runs of up to 3, newlines
 *   split off) or "qwen2" (the same with every number alone); tokens, token_type
 *   (optional), merges ("left right" in rank order, each part and their concatenation a token). A byte whose
 *   one-symbol token is missing is dropped (as HF BPE with no unk_token).
 * - tokenizer.ggml.model "llama", SentencePiece-style BPE with byte fallback (Llama-2 family): ' ' becomes '▁'
 *   and a '▁' is prepended per tokenizer.ggml.add_space_prefix (bool, default true) and tokenizer.ggml.pre
 *   ("default": before every text segment, the Llama-2 Prepend normalizer and llama.cpp's rule;
 *   "metaspace-always" / "metaspace-first" / "metaspace-never", optionally "-split": HF's Metaspace
 *   pre-tokenizer); a character with no token becomes its UTF-8 bytes' <0xNN> tokens (token_type 6), else the
 *   unknown token; merges by tokenizer.ggml.merges rank, or, without merges, by tokenizer.ggml.scores (f32,
 *   the highest-scoring token two adjacent symbols make). The unknown token is matched whole like added ones.
 *   Decoding maps '▁' to ' ', a byte token to its byte, and drops one leading ' ' of the whole text when
 *   add_space_prefix (HF's Strip decoder); pbs2p_token_to_piece keeps that space.
 * Both: optional bos/eos/unknown/padding ids (u32 < n_vocab) and add_bos/add_eos (bool). Anything else: a
 * status, never an abort (other models or pre-tokenizers: PBS2P_ERR_UNSUPPORTED; malformed keys:
 * PBS2P_ERR_FORMAT; no tokenizer: PBS2P_ERR_NOT_FOUND). Added tokens (token_type 3 control, 4 user-defined) are
 * matched whole in the raw text before anything else, longest first. Decoding differs from HF's decode in
 * that added tokens are always kept as their text (HF skip_special_tokens=False) and bytes that do not form
 * UTF-8 are returned as they are (HF's ByteFallback gives U+FFFD per byte token). Encoding adds no BOS/EOS
 * (see add_bos/add_eos). The tokenizer copies what it needs: it outlives the file. A tokenizer is read-only
 * after loading: several threads may use one at once. */

typedef struct pbs2p_tokenizer pbs2p_tokenizer; /* opaque */

typedef struct pbs2p_tokenizer_info {
    int32_t n_vocab, n_merges, n_added; /* n_merges: "llama" without merges: the pairs its scores give;
                                           n_added: tokens matched whole ("llama": with the unknown token) */
    int32_t pre;                    /* 0 gpt-2 / default, 1 smollm, 2 "llama" (SentencePiece-style, any prefix rule),
                                       3 llama-bpe, 4 qwen2 */
    int32_t bos, eos, unk, pad;     /* -1 when the file has none */
    int32_t add_bos, add_eos;       /* 0/1 (0 when absent) */
} pbs2p_tokenizer_info;

/* Read and validate the tokenizer of `f`; *out = NULL on failure. */
PBS2P_API pbs2p_status pbs2p_tokenizer_load(const pbs2p_gguf *f, pbs2p_tokenizer **out);
/* NULL is ignored. */
PBS2P_API void pbs2p_tokenizer_free(pbs2p_tokenizer *t);
PBS2P_API pbs2p_status pbs2p_tokenizer_get_info(const pbs2p_tokenizer *t, pbs2p_tokenizer_info *out);
/* Ids of the UTF-8 text[0..len) (invalid UTF-8 bytes are encoded as single bytes) into ids[0..cap);
 * *n_out = the number of ids. When they do not fit: PBS2P_ERR_ARGUMENT, *n_out = the capacity needed
 * (ids may be NULL with cap 0 to ask). */
PBS2P_API pbs2p_status pbs2p_tokenize(const pbs2p_tokenizer *t, const char *text, size_t len, int32_t *ids,
                                      size_t cap, size_t *n_out);
/* The bytes of ids[0..n) concatenated into out[0..cap) (not NUL-terminated); *n_out = their count. When they
 * do not fit: PBS2P_ERR_ARGUMENT, *n_out = the bytes needed. An id >= n_vocab: PBS2P_ERR_ARGUMENT. */
PBS2P_API pbs2p_status pbs2p_detokenize(const pbs2p_tokenizer *t, const int32_t *ids, size_t n, char *out,
                                        size_t cap, size_t *n_out);
/* The bytes token `id` decodes to (may be part of a UTF-8 character); valid while the tokenizer lives. */
PBS2P_API pbs2p_status pbs2p_token_to_piece(const pbs2p_tokenizer *t, int32_t id, const char **piece, size_t *len);

/* The tokenizer the model's file holds (loaded with the model, freed with it; read-only, never free it).
 * PBS2P_ERR_NOT_FOUND when the file has no tokenizer.ggml.* keys, PBS2P_ERR_UNSUPPORTED when it has a kind this
 * library does not read (the model still runs from token ids); *out = NULL then. */
PBS2P_API pbs2p_status pbs2p_model_tokenizer(const pbs2p_model *m, const pbs2p_tokenizer **out);

/* ==== Sampler (sampler.c) =========================================================================
 *
 * Picks the next token from a row of logits. temperature <= 0 is greedy: the arg-max (the lowest id among
 * equal maxima), no random numbers drawn. Otherwise, in this order (llama.cpp's and HF's order): keep the top_k
 * largest logits (0: all), divide by temperature, softmax in double, keep the smallest set of most probable
 * tokens whose probability sum reaches top_p (1: all; ties of probability kept in id order), renormalize and
 * draw one with the sampler's own generator (splitmix64 seeded by `seed`: the same seed and logits give the
 * same tokens on every machine). A sampler holds its state (generator, scratch): no global state; one sampler
 * must not be used by two threads at once. */

typedef struct pbs2p_sampler_params {
    float temperature;  /* <= 0: greedy; otherwise finite */
    int32_t top_k;      /* 0: off; otherwise >= 1 (clipped to n_vocab) */
    float top_p;        /* in (0, 1]; 1: off */
    uint64_t seed;
} pbs2p_sampler_params;

typedef struct pbs2p_sampler pbs2p_sampler; /* opaque */

/* Greedy: {0, 0, 1, 0}. */
PBS2P_API pbs2p_sampler_params pbs2p_sampler_default_params(void);
/* A sampler for rows of n_vocab logits (params NULL: defaults); *out = NULL on failure. */
PBS2P_API pbs2p_status pbs2p_sampler_new(const pbs2p_sampler_params *params, int32_t n_vocab, pbs2p_sampler **out);
/* NULL is ignored. */
PBS2P_API void pbs2p_sampler_free(pbs2p_sampler *s);
/* The next token from logits[0..n) (n == the sampler's n_vocab; a NaN logit: PBS2P_ERR_ARGUMENT). */
PBS2P_API pbs2p_status pbs2p_sampler_sample(pbs2p_sampler *s, const float *logits, size_t n, int32_t *token);

/* ==== Generation and perplexity (generate.c, perplexity.c) ==========================================
 *
 * pbs2p_generate runs the prompt from an empty KV cache in one eval (prompt processing), then samples and
 * evals one token at a time (decoding). After each new token the callback (may be NULL) receives it with the
 * bytes it decodes to (piece: NULL when the model has no tokenizer); a non-zero return stops generation.
 * Generation also stops after n_predict tokens, at the tokenizer's eos when stop_at_eos (the eos token is
 * reported and counted), or when the context is full. Timings are wall-clock (monotonic) seconds. */

typedef int (*pbs2p_token_callback)(void *user_data, int32_t token, const char *piece, size_t piece_len);

typedef enum pbs2p_stop_reason {
    PBS2P_STOP_LENGTH = 0,    /* n_predict tokens generated */
    PBS2P_STOP_EOS = 1,       /* the eos token was generated */
    PBS2P_STOP_CALLBACK = 2,  /* the callback returned non-zero */
    PBS2P_STOP_CONTEXT = 3    /* the KV cache is full (prompt + generated == n_ctx) */
} pbs2p_stop_reason;

typedef struct pbs2p_generate_params {
    int32_t n_predict;              /* >= 0 new tokens at most */
    int32_t stop_at_eos;            /* 0/1 (needs a tokenizer with an eos id; otherwise ignored) */
    pbs2p_sampler_params sampler;
} pbs2p_generate_params;

typedef struct pbs2p_generate_stats {
    int32_t n_prompt;               /* prompt tokens evaluated */
    int32_t n_generated;            /* tokens generated (written to out_tokens) */
    int32_t stop_reason;            /* pbs2p_stop_reason */
    double prompt_seconds;          /* the prompt's eval */
    double decode_seconds;          /* sampling + evals of the generated tokens after the first */
} pbs2p_generate_stats;

/* {64, 1, greedy}. */
PBS2P_API pbs2p_generate_params pbs2p_generate_default_params(void);
/* Generate after prompt[0..n_prompt) (n_prompt >= 1; n_prompt >= n_ctx: PBS2P_ERR_ARGUMENT, prompt longer than
 * the context); the generated ids go to out_tokens[0..cap) (cap >= n_predict; may be NULL with cap 0 when the
 * callback is enough). stats may be NULL. */
/* PBS2P_OK when a prompt of n_prompt tokens leaves room in the model's context (info from pbs2p_model_get_info or
 * pbs2p_model_peek) for one generated token, as pbs2p_generate requires; else PBS2P_ERR_ARGUMENT with the message. */
PBS2P_API pbs2p_status pbs2p_prompt_fits(const pbs2p_model_info *info, size_t n_prompt);
PBS2P_API pbs2p_status pbs2p_generate(pbs2p_model *m, const int32_t *prompt, int32_t n_prompt,
                                      const pbs2p_generate_params *params, pbs2p_token_callback callback,
                                      void *user_data, int32_t *out_tokens, size_t cap, pbs2p_generate_stats *stats);

typedef struct pbs2p_perplexity_result {
    double ppl;                     /* exp(nll) */
    double nll;                     /* mean negative log-likelihood, nats per predicted token */
    int64_t tokens;                 /* predicted tokens = windows * (ctx - 1) */
    int32_t windows;
} pbs2p_perplexity_result;

/* Perplexity of tokens[0..n) as `pbs2p-edge eval --seqlen ctx` computes it: non-overlapping windows of ctx
 * tokens (the tail dropped; max_windows > 0 keeps the first max_windows), each a separate eval from an empty
 * cache predicting its tokens 1..ctx-1; log-softmax in float, sums in double. Needs 2 <= ctx <= n_ctx and at
 * least one window (n >= ctx). Resets the KV cache. */
PBS2P_API pbs2p_status pbs2p_model_perplexity(pbs2p_model *m, const int32_t *tokens, size_t n, int32_t ctx,
                                              int32_t max_windows, pbs2p_perplexity_result *out);

#ifdef __cplusplus
}
#endif
#endif /* PBS2P_H */
