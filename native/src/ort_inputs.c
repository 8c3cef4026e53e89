/* ort_inputs.c — checks a PackedLinear node's attributes and input tensors against docs/ONNX.md §4 and
 * docs/FORMAT.md §2-5 before any stream byte is read, so a mismatched node is an OrtStatus, never an
 * out-of-bounds read. */
#include "ort_inputs.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const pbs2p_ort_input_names[PL_N_INPUTS] = {
    "X", "mask", "signs", "signs2", "salient", "groups", "alpha", "alpha2", "mu", "col_scale", "bias"};

const ONNXTensorElementDataType pbs2p_ort_input_types[PL_N_INPUTS] = {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,                                        /* X */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,   /* mask, signs */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,   /* signs2, salient */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,                                        /* groups */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, /* alpha, alpha2 */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, /* mu, col_scale */
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT};                                       /* bias */

static const char *type_name(ONNXTensorElementDataType t) {
    switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    default: return "another type";
    }
}

OrtStatus *pbs2p_ort_fail(const pbs2p_ort_node *node, OrtErrorCode code, const char *fmt, ...) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "ai.pbs2p::PackedLinear node '%s': ", node->name ? node->name : "");
    if (n < 0 || (size_t)n >= sizeof msg) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    return node->api->CreateStatus(code, msg);
}

/* Our message + ORT's, and ORT's status released. */
static OrtStatus *wrap(const pbs2p_ort_node *node, OrtStatus *st, const char *what) {
    OrtStatus *out = pbs2p_ort_fail(node, node->api->GetErrorCode(st), "%s: %s", what, node->api->GetErrorMessage(st));
    node->api->ReleaseStatus(st);
    return out;
}

/* ---- attributes -------------------------------------------------------------------------------------------- */

static OrtStatus *read_name(pbs2p_ort_node *node, const OrtKernelInfo *info) {
    size_t size = 0;
    OrtStatus *st = node->api->KernelInfo_GetNodeName(info, NULL, &size); /* NULL: asks for the size, with NUL */
    if (st) return wrap(node, st, "cannot read the node name");
    node->name = calloc(size > 0 ? size : 1, 1);
    if (!node->name) return pbs2p_ort_fail(node, ORT_FAIL, "out of memory");
    if (size > 0 && (st = node->api->KernelInfo_GetNodeName(info, node->name, &size)) != NULL)
        return wrap(node, st, "cannot read the node name");
    return NULL;
}

static OrtStatus *read_int(const pbs2p_ort_node *node, const OrtKernelInfo *info, const char *name, int32_t *out) {
    int64_t v = 0;
    OrtStatus *st = node->api->KernelInfoGetAttribute_int64(info, name, &v);
    if (st) {
        char what[96];
        snprintf(what, sizeof what, "int attribute '%s' is required", name);
        return wrap(node, st, what);
    }
    if (v < INT32_MIN || v > INT32_MAX)
        return pbs2p_ort_fail(node, ORT_INVALID_GRAPH, "attribute '%s' = %lld is out of range", name, (long long)v);
    *out = (int32_t)v;
    return NULL;
}

OrtStatus *pbs2p_ort_node_init(pbs2p_ort_node *node, const OrtApi *api, const OrtKernelInfo *info) {
    memset(node, 0, sizeof *node);
    node->api = api;
    OrtStatus *st = read_name(node, info);
    if (st) return st;
    pbs2p_layer_desc *m = &node->meta;
    struct { const char *name; int32_t *dst; } attrs[] = {
        {"rows", &m->rows}, {"cols", &m->cols}, {"n", &m->n}, {"m", &m->m}, {"group_size", &m->group_size},
        {"split", &m->split}, {"n_salient", &m->n_salient}, {"has_mu", &m->has_mu},
        {"has_col_scale", &m->has_col_scale}, {"format_version", &m->format_version}};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if ((st = read_int(node, info, attrs[i].name, attrs[i].dst)) != NULL) return st;
    m->has_salient = m->n_salient > 0;
    if (pbs2p_layer_sizes_of(m, &node->sizes) != PBS2P_OK)
        return pbs2p_ort_fail(node, ORT_INVALID_GRAPH, "bad attributes: %s", pbs2p_last_error());
    return NULL;
}

void pbs2p_ort_node_free(pbs2p_ort_node *node) {
    free(node->name);
    node->name = NULL;
}

/* ---- tensors ----------------------------------------------------------------------------------------------- */

OrtStatus *pbs2p_ort_tensor_shape(const pbs2p_ort_node *node, const OrtValue *v, const char *what,
                                  ONNXTensorElementDataType *type, int64_t *dims, size_t cap, size_t *ndim) {
    const OrtApi *api = node->api;
    OrtTensorTypeAndShapeInfo *info = NULL;
    OrtStatus *st = api->GetTensorTypeAndShape(v, &info);
    if (!st) st = api->GetTensorElementType(info, type);
    if (!st) st = api->GetDimensionsCount(info, ndim);
    if (!st && *ndim > cap) {
        api->ReleaseTensorTypeAndShapeInfo(info);
        return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "input '%s' has %zu dimensions, at most %zu are supported",
                              what, *ndim, cap);
    }
    if (!st) st = api->GetDimensions(info, dims, *ndim);
    api->ReleaseTensorTypeAndShapeInfo(info);
    if (st) {
        char msg[96];
        snprintf(msg, sizeof msg, "cannot read the type and shape of input '%s'", what);
        return wrap(node, st, msg);
    }
    return NULL;
}

static void format_dims(char *out, size_t cap, const int64_t *dims, size_t ndim) {
    size_t n = (size_t)snprintf(out, cap, "[");
    for (size_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* What the attributes require of one stream input. */
typedef struct expect {
    int present;       /* 1: required, 0: must be absent, -1: optional (bias) */
    const char *rule;  /* why it must be present / absent */
    size_t ndim;
    int64_t dims[3];
} expect;

static void expected_inputs(const pbs2p_layer_desc *m, const pbs2p_layer_sizes *s, expect e[PL_N_INPUTS]) {
    const int64_t R = m->rows, K = m->cols, G = (int64_t)s->groups_per_row, nreg = (int64_t)s->regions;
    memset(e, 0, PL_N_INPUTS * sizeof *e);
    e[PL_MASK] = (expect){s->mask_row_bytes > 0, "it is stored exactly when n < m", 2, {R, (int64_t)s->mask_row_bytes}};
    e[PL_SIGNS] = (expect){1, "it is always stored", 2, {R, (int64_t)s->signs_row_bytes}};
    e[PL_SIGNS2] = (expect){m->has_salient, "it is stored exactly when n_salient > 0", 2,
                            {R, (int64_t)s->signs2_row_bytes}};
    e[PL_SALIENT] = (expect){m->has_salient, "it is stored exactly when n_salient > 0", 1, {(int64_t)s->salient_bytes}};
    e[PL_GROUPS] = (expect){s->groups_row_bytes > 0, "it is stored exactly when split >= 2", 2,
                            {R, (int64_t)s->groups_row_bytes}};
    e[PL_ALPHA] = (expect){1, "it is always stored", 3, {nreg, R, G}};
    e[PL_ALPHA2] = (expect){m->has_salient, "it is stored exactly when n_salient > 0", 2, {R, G}};
    e[PL_MU] = (expect){m->has_mu, "it is stored exactly when has_mu = 1", 3, {nreg, R, G}};
    e[PL_COL_SCALE] = (expect){m->has_col_scale, "it is stored exactly when has_col_scale = 1", 2, {nreg, K}};
    e[PL_BIAS] = (expect){-1, "", 1, {R}};
}

OrtStatus *pbs2p_ort_bind_streams(const pbs2p_ort_node *node, const OrtValue *const inputs[PL_N_INPUTS],
                                  pbs2p_layer_desc *desc, const float **bias) {
    expect e[PL_N_INPUTS];
    expected_inputs(&node->meta, &node->sizes, e);
    const void *data[PL_N_INPUTS] = {0};
    for (int i = PL_MASK; i < PL_N_INPUTS; i++) {
        const char *name = pbs2p_ort_input_names[i];
        if (!inputs[i]) {
            if (e[i].present == 1)
                return pbs2p_ort_fail(node, ORT_INVALID_GRAPH, "input '%s' is absent but %s", name, e[i].rule);
            continue;
        }
        if (e[i].present == 0)
            return pbs2p_ort_fail(node, ORT_INVALID_GRAPH, "input '%s' is present but %s", name, e[i].rule);
        ONNXTensorElementDataType type;
        int64_t dims[PL_MAX_RANK];
        size_t ndim;
        OrtStatus *st = pbs2p_ort_tensor_shape(node, inputs[i], name, &type, dims, PL_MAX_RANK, &ndim);
        if (st) return st;
        int same = type == pbs2p_ort_input_types[i] && ndim == e[i].ndim;
        for (size_t d = 0; same && d < ndim; d++) same = dims[d] == e[i].dims[d];
        if (!same) {
            char want[96], got[96];
            format_dims(want, sizeof want, e[i].dims, e[i].ndim);
            format_dims(got, sizeof got, dims, ndim);
            return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT,
                                  "input '%s' must be %s %s for rows=%d cols=%d n=%d m=%d group_size=%d split=%d "
                                  "n_salient=%d, got %s %s", name, type_name(pbs2p_ort_input_types[i]), want,
                                  (int)node->meta.rows, (int)node->meta.cols, (int)node->meta.n, (int)node->meta.m,
                                  (int)node->meta.group_size, (int)node->meta.split, (int)node->meta.n_salient,
                                  type_name(type), got);
        }
        void *p = NULL;
        /* ORT's getter takes a non-const OrtValue; the data is only read */
        if ((st = node->api->GetTensorMutableData((OrtValue *)(uintptr_t)inputs[i], &p)) != NULL) {
            OrtStatus *out = pbs2p_ort_fail(node, ORT_FAIL, "cannot read input '%s': %s", name,
                                            node->api->GetErrorMessage(st));
            node->api->ReleaseStatus(st);
            return out;
        }
        if (!p) return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "input '%s' has no data", name);
        data[i] = p;
    }
    /* the scales' finiteness is pbs2p_layer_prepare's check (GGUF files too); the bias is the op's own */
    const float *b = data[PL_BIAS];
    for (int32_t i = 0; b && i < node->meta.rows; i++)
        if (!isfinite(b[i]))
            return pbs2p_ort_fail(node, ORT_INVALID_ARGUMENT, "input 'bias' [%d] is %s: a damaged model (a bias must "
                                  "be finite)", (int)i, isnan(b[i]) ? "NaN" : "infinite");
    *desc = node->meta;
    desc->mask = data[PL_MASK];
    desc->signs = data[PL_SIGNS];
    desc->signs2 = data[PL_SIGNS2];
    desc->salient = data[PL_SALIENT];
    desc->groups = data[PL_GROUPS];
    desc->alpha = data[PL_ALPHA];   /* float16 bits: ORT stores float16 as raw uint16 */
    desc->alpha2 = data[PL_ALPHA2];
    desc->mu = data[PL_MU];
    desc->col_scale = data[PL_COL_SCALE];
    *bias = data[PL_BIAS];
    return NULL;
}
