/* ort_op.c — ONNX Runtime custom op ai.pbs2p::PackedLinear v1 (docs/ONNX.md §4) on libpbs2p's kernels, and the
 * RegisterCustomOps entry point that SessionOptions.register_custom_ops_library(<libpbs2p>) calls.
 *
 * Y (..., rows) = X (..., cols) @ W_hat^T (+ bias), W_hat the packed layer of the node's stream inputs.
 * - Prepare once: when every stream input is a constant initializer (what the exporter writes), the kernel
 *   checks and prepares the layer when ORT creates it (session creation) and keeps it; compute only checks X.
 *   Otherwise (streams fed as graph inputs) each compute checks and prepares the streams it is given and frees
 *   them afterwards: correct for any data, but slow (a cache keyed by data pointers would be wrong when ORT
 *   reuses a buffer for new contents).
 * - Threads: one per compute by default — ORT parallelizes across its own intra-op pool and nodes, and libpbs2p's
 *   threads would compete with it. PBS2P_ORT_THREADS=N (1..64, read when a kernel is created) lets gemm/gemv use
 *   up to N threads; results do not depend on N (pbs2p.h convention 5).
 * - One token (product of the leading dimensions == 1) runs pbs2p_gemv, more run pbs2p_gemm: both float32,
 *   equal to the portable flavor within float32 summation-order rounding (docs/ONNX.md §7).
 * - Errors are OrtStatus values with the node name (CreateKernelV2 / KernelComputeV2); nothing aborts.
 *
 * Global state, as ORT's registration model requires: the OrtCustomOp table is a read-only static (ORT keeps
 * pointers to it), and each OrtCustomOpDomain created by RegisterCustomOps must outlive every session using it,
 * which the library cannot know, so it keeps them in a mutex-guarded list released when the library is unloaded
 * (ORT unloads it with the session options that loaded it). */
#include "ort_abi.h"
#include "ort_inputs.h"
#include "pbs2p.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PBS2P_ORT_DOMAIN "ai.pbs2p"
#define PBS2P_ORT_OP "PackedLinear"
#define PBS2P_ORT_MAX_THREADS 64

typedef struct packed_linear {
    pbs2p_ort_node node;  /* api, name, attributes */
    int n_threads;
    pbs2p_layer *layer;   /* prepared at creation (constant streams), else NULL */
    float *bias;          /* (rows,) copy of a constant bias, else NULL */
    int constant;         /* 1 when layer/bias come from constant initializers */
} packed_linear;

/* ---- kernel lifetime ---------------------------------------------------------------------------------------- */

static void ORT_API_CALL kernel_destroy(void *k_) {
    packed_linear *k = k_;
    if (!k) return;
    pbs2p_layer_free(k->layer);
    free(k->bias);
    pbs2p_ort_node_free(&k->node);
    free(k);
}

static OrtStatus *read_threads(packed_linear *k) {
    k->n_threads = 1;
    const char *env = getenv("PBS2P_ORT_THREADS");
    if (!env || !*env) return NULL;
    char *end;
    long v = strtol(env, &end, 10);
    if (*end != '\0' || v < 1 || v > PBS2P_ORT_MAX_THREADS)
        return pbs2p_ort_fail(&k->node, ORT_INVALID_ARGUMENT, "PBS2P_ORT_THREADS=%s must be an integer in 1..%d",
                              env, PBS2P_ORT_MAX_THREADS);
    k->n_threads = (int)v;
    return NULL;
}

/* Presence (non-empty input name) and constant value of each stream input of the node. */
static OrtStatus *constant_inputs(packed_linear *k, const OrtKernelInfo *info, const OrtValue *values[PL_N_INPUTS],
                                  int *all_constant) {
    const OrtApi *api = k->node.api;
    size_t count = 0;
    OrtStatus *st = api->KernelInfo_GetInputCount(info, &count);
    *all_constant = 1;
    for (size_t i = PL_MASK; !st && i < PL_N_INPUTS && i < count; i++) {
        size_t len = 0;
        if ((st = api->KernelInfo_GetInputName(info, i, NULL, &len)) != NULL) break; /* len counts the NUL */
        if (len <= 1) continue;                                                        /* "" : absent */
        int is_constant = 0;
        if ((st = api->KernelInfoGetConstantInput_tensor(info, i, &is_constant, &values[i])) != NULL) break;
        if (!is_constant || !values[i]) {
            values[i] = NULL;
            *all_constant = 0;
        }
    }
    if (st) {
        OrtStatus *out = pbs2p_ort_fail(&k->node, api->GetErrorCode(st), "cannot inspect the inputs: %s",
                                        api->GetErrorMessage(st));
        api->ReleaseStatus(st);
        return out;
    }
    return NULL;
}

static OrtStatus *prepare(const pbs2p_ort_node *node, const pbs2p_layer_desc *desc, pbs2p_layer **out) {
    if (pbs2p_layer_prepare(desc, out) != PBS2P_OK)
        return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "packed streams rejected: %s", pbs2p_last_error());
    return NULL;
}

static OrtStatus *ORT_API_CALL kernel_create(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **kernel) {
    (void)op;
    *kernel = NULL;
    packed_linear *k = calloc(1, sizeof *k);
    if (!k) return api->CreateStatus(ORT_FAIL, "ai.pbs2p::PackedLinear: out of memory for a kernel");
    OrtStatus *st = pbs2p_ort_node_init(&k->node, api, info);
    if (!st) st = read_threads(k);
    const OrtValue *values[PL_N_INPUTS] = {0};
    int all_constant = 0;
    if (!st) st = constant_inputs(k, info, values, &all_constant);
    if (!st && all_constant) {
        pbs2p_layer_desc desc;
        const float *bias = NULL;
        st = pbs2p_ort_bind_streams(&k->node, values, &desc, &bias);
        if (!st) st = prepare(&k->node, &desc, &k->layer);
        if (!st && bias) {
            size_t R = (size_t)k->node.meta.rows;
            if (!(k->bias = malloc(R * sizeof *k->bias))) st = pbs2p_ort_fail(&k->node, ORT_FAIL, "out of memory");
            else memcpy(k->bias, bias, R * sizeof *k->bias);
        }
        k->constant = 1;
    }
    if (st) {
        kernel_destroy(k);
        return st;
    }
    *kernel = k;
    return NULL;
}

/* ---- compute ------------------------------------------------------------------------------------------------ */

static OrtStatus *wrap(const pbs2p_ort_node *node, OrtStatus *st, const char *what) {
    OrtStatus *out = pbs2p_ort_fail(node, node->api->GetErrorCode(st), "%s: %s", what, node->api->GetErrorMessage(st));
    node->api->ReleaseStatus(st);
    return out;
}

/* Y = X W^T (+ bias) for n_tokens rows of X. */
static OrtStatus *run(const packed_linear *k, const pbs2p_layer *layer, const float *bias, const float *X,
                      size_t n_tokens, float *Y) {
    const size_t R = (size_t)k->node.meta.rows, K = (size_t)k->node.meta.cols;
    pbs2p_status s = n_tokens == 1 ? pbs2p_gemv(layer, X, K, Y, R, k->n_threads)
                                   : pbs2p_gemm(layer, X, n_tokens, n_tokens * K, Y, n_tokens * R, k->n_threads);
    if (s != PBS2P_OK) return pbs2p_ort_fail(&k->node, ORT_FAIL, "kernel failed: %s", pbs2p_last_error());
    if (bias)
        for (size_t t = 0; t < n_tokens; t++)
            for (size_t i = 0; i < R; i++) Y[t * R + i] += bias[i];
    return NULL;
}

static OrtStatus *ORT_API_CALL kernel_compute(void *k_, OrtKernelContext *ctx) {
    const packed_linear *k = k_;
    const pbs2p_ort_node *node = &k->node;
    const OrtApi *api = node->api;
    size_t count = 0;
    OrtStatus *st = api->KernelContext_GetInputCount(ctx, &count);
    if (st) return wrap(node, st, "cannot count the inputs");
    const OrtValue *in[PL_N_INPUTS] = {0};
    for (size_t i = 0; i < count && i < PL_N_INPUTS; i++)
        if ((st = api->KernelContext_GetInput(ctx, i, &in[i])) != NULL) return wrap(node, st, "cannot read an input");
    if (!in[PL_X]) return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "input 'X' is missing");

    /* X: float32 [..., cols]; Y: float32 [..., rows] */
    ONNXTensorElementDataType type;
    int64_t dims[PL_MAX_RANK];
    size_t ndim;
    if ((st = pbs2p_ort_tensor_shape(node, in[PL_X], "X", &type, dims, PL_MAX_RANK, &ndim)) != NULL) return st;
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || ndim < 1 || dims[ndim - 1] != node->meta.cols)
        return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "input 'X' must be float32 [..., %d] (cols), got %s of "
                              "rank %zu with last dimension %lld", (int)node->meta.cols,
                              type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float32" : "another type", ndim,
                              ndim ? (long long)dims[ndim - 1] : -1LL);
    size_t n_tokens = 1;
    for (size_t d = 0; d + 1 < ndim; d++) n_tokens *= (size_t)dims[d]; /* ORT sizes are >= 0 and fit in memory */
    dims[ndim - 1] = node->meta.rows;
    OrtValue *yv = NULL;
    if ((st = api->KernelContext_GetOutput(ctx, 0, dims, ndim, &yv)) != NULL)
        return wrap(node, st, "cannot allocate Y");
    if (n_tokens == 0) return NULL;
    void *X = NULL, *Y = NULL;
    if ((st = api->GetTensorMutableData((OrtValue *)(uintptr_t)in[PL_X], &X)) != NULL) return wrap(node, st, "X");
    if ((st = api->GetTensorMutableData(yv, &Y)) != NULL) return wrap(node, st, "Y");

    if (k->constant) return run(k, k->layer, k->bias, X, n_tokens, Y);
    /* streams given at run time: check and prepare them for this call only */
    pbs2p_layer_desc desc;
    const float *bias = NULL;
    pbs2p_layer *layer = NULL;
    if ((st = pbs2p_ort_bind_streams(node, in, &desc, &bias)) != NULL) return st;
    if ((st = prepare(node, &desc, &layer)) != NULL) return st;
    st = run(k, layer, bias, X, n_tokens, Y);
    pbs2p_layer_free(layer);
    return st;
}

/* ---- the op table ------------------------------------------------------------------------------------------- */

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) { (void)op; return PBS2P_ORT_OP; }
static const char *ORT_API_CALL op_provider(const OrtCustomOp *op) { (void)op; return NULL; /* CPU */ }

static size_t ORT_API_CALL op_input_count(const OrtCustomOp *op) { (void)op; return PL_N_INPUTS; }

static ONNXTensorElementDataType ORT_API_CALL op_input_type(const OrtCustomOp *op, size_t i) {
    (void)op;
    return i < PL_N_INPUTS ? pbs2p_ort_input_types[i] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_input_kind(const OrtCustomOp *op, size_t i) {
    (void)op;
    return i == PL_X || i == PL_SIGNS || i == PL_ALPHA ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
}

static OrtMemType ORT_API_CALL op_input_memory(const OrtCustomOp *op, size_t i) {
    (void)op; (void)i;
    return OrtMemTypeDefault;
}

static size_t ORT_API_CALL op_output_count(const OrtCustomOp *op) { (void)op; return 1; }

static ONNXTensorElementDataType ORT_API_CALL op_output_type(const OrtCustomOp *op, size_t i) {
    (void)op; (void)i;
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_output_kind(const OrtCustomOp *op, size_t i) {
    (void)op; (void)i;
    return INPUT_OUTPUT_REQUIRED;
}

/* version 16: ORT uses CreateKernelV2 / KernelComputeV2; the V1 callbacks and the variadic ones stay NULL */
static const OrtCustomOp packed_linear_op = {
    .version = PBS2P_ORT_API_VERSION,
    .GetName = op_name,
    .GetExecutionProviderType = op_provider,
    .GetInputType = op_input_type,
    .GetInputTypeCount = op_input_count,
    .GetOutputType = op_output_type,
    .GetOutputTypeCount = op_output_count,
    .KernelDestroy = kernel_destroy,
    .GetInputCharacteristic = op_input_kind,
    .GetOutputCharacteristic = op_output_kind,
    .GetInputMemoryType = op_input_memory,
    .CreateKernelV2 = kernel_create,
    .KernelComputeV2 = kernel_compute,
};

/* ---- registration ------------------------------------------------------------------------------------------- */

typedef struct owned_domain {
    OrtCustomOpDomain *domain;
    void (ORT_API_CALL *release)(OrtCustomOpDomain *);
    struct owned_domain *next;
} owned_domain;

static pthread_mutex_t domains_lock = PTHREAD_MUTEX_INITIALIZER;
static owned_domain *domains; /* every domain handed to ORT, released at unload */

__attribute__((destructor)) static void release_domains(void) {
    pthread_mutex_lock(&domains_lock);
    while (domains) {
        owned_domain *d = domains;
        domains = d->next;
        d->release(d->domain);
        free(d);
    }
    pthread_mutex_unlock(&domains_lock);
}

static OrtStatus *api_too_old(const OrtApiBase *base) {
    const OrtApi *v1 = base->GetApi(1); /* every ORT serves version 1 */
    if (!v1) return NULL;               /* no way to build a status: ORT then reports the op as unknown */
    char msg[256];
    const char *have = base->GetVersionString ? base->GetVersionString() : "unknown";
    snprintf(msg, sizeof msg, "libpbs2p's ai.pbs2p::PackedLinear needs the ONNX Runtime C API version %u "
             "(onnxruntime >= 1.16); this onnxruntime is %s", PBS2P_ORT_API_VERSION, have ? have : "unknown");
    return v1->CreateStatus(ORT_FAIL, msg);
}

OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base) {
    if (!api_base || !api_base->GetApi) return NULL; /* cannot build a status without an OrtApi */
    const OrtApi *api = api_base->GetApi(PBS2P_ORT_API_VERSION);
    if (!api) return api_too_old(api_base);
    owned_domain *owned = malloc(sizeof *owned);
    if (!owned) return api->CreateStatus(ORT_FAIL, "libpbs2p: out of memory registering " PBS2P_ORT_DOMAIN);
    OrtCustomOpDomain *domain = NULL;
    OrtStatus *st = api->CreateCustomOpDomain(PBS2P_ORT_DOMAIN, &domain);
    if (!st) st = api->CustomOpDomain_Add(domain, &packed_linear_op);
    if (!st) st = api->AddCustomOpDomain(options, domain);
    if (st) {
        api->ReleaseCustomOpDomain(domain); /* NULL is accepted */
        free(owned);
        return st;
    }
    *owned = (owned_domain){domain, api->ReleaseCustomOpDomain, NULL};
    pthread_mutex_lock(&domains_lock);
    owned->next = domains;
    domains = owned;
    pthread_mutex_unlock(&domains_lock);
    return NULL;
}
