/* ort_abi.h — the small part of ONNX Runtime's stable C ABI that libpbs2p's custom op uses (internal).
 *
 * ONNX Runtime installs no C headers with its Python wheel, so these declarations are written here from:
 *  - include/onnxruntime/core/session/onnxruntime_c_api.h (ORT 1.24/1.25 header: OrtApiBase, OrtApi, OrtCustomOp,
 *    ONNXTensorElementDataType, OrtErrorCode, OrtMemType, OrtCustomOpInputOutputCharacteristic), and
 *  - onnxruntime/core/session/onnxruntime_c_api.cc (its ort_api_1_to_25 table: "End of Version N" markers and the
 *    static_asserts "offsetof(OrtApi, ReleaseCustomOpDomain) / sizeof(void*) == 101", "... GetBuildInfoString ... ==
 *    254", "... KernelContext_GetResource ... == 265").
 * OrtApi is append-only: slot i means the same function in every ORT release that has it. Slots this library
 * does not call are opaque `void *` padding; the static_asserts at the end pin every slot it calls to the
 * index the ORT table gives it, so a miscounted gap cannot compile.
 *
 * Version requested: PBS2P_ORT_API_VERSION 16 (ONNX Runtime >= 1.16, September 2023). It is the oldest that has
 * every slot used here (KernelInfoGetConstantInput_tensor and KernelInfo_GetNodeName arrived in 15) and the
 * OrtCustomOp V2 callbacks (CreateKernelV2 / KernelComputeV2, read by ORT when op->version >= 16), which let kernel
 * creation and compute return an OrtStatus instead of failing silently. Tested with onnxruntime 1.32.
 */
#ifndef PBS2P_ORT_ABI_H
#define PBS2P_ORT_ABI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "pbs2p.h"

#define PBS2P_ORT_API_VERSION 16u

#if defined(_WIN32)
#define ORT_API_CALL __stdcall
#else
#define ORT_API_CALL
#endif

/* Opaque ORT objects (never dereferenced here). */
typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtCustomOp OrtCustomOp; /* defined below */

/* TensorProto.DataType numbering (only the types this op reads). */
typedef enum ONNXTensorElementDataType {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 = 2,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 = 10
} ONNXTensorElementDataType;

typedef enum OrtErrorCode {
    ORT_OK = 0,
    ORT_FAIL = 1,
    ORT_INVALID_ARGUMENT = 2,
    ORT_NO_SUCHFILE = 3,
    ORT_NO_MODEL = 4,
    ORT_ENGINE_ERROR = 5,
    ORT_RUNTIME_EXCEPTION = 6,
    ORT_INVALID_PROTOBUF = 7,
    ORT_MODEL_LOADED = 8,
    ORT_NOT_IMPLEMENTED = 9,
    ORT_INVALID_GRAPH = 10,
    ORT_EP_FAIL = 11
} OrtErrorCode;

typedef enum OrtMemType {
    OrtMemTypeCPUInput = -2,
    OrtMemTypeCPUOutput = -1,
    OrtMemTypeDefault = 0
} OrtMemType;

typedef enum OrtCustomOpInputOutputCharacteristic {
    INPUT_OUTPUT_REQUIRED = 0,
    INPUT_OUTPUT_OPTIONAL = 1,
    INPUT_OUTPUT_VARIADIC = 2
} OrtCustomOpInputOutputCharacteristic;

/* ---- OrtApi: the function table, slots 0..249 ---------------------------------------------------------------- */
typedef struct OrtApi {
    OrtStatus *(ORT_API_CALL *CreateStatus)(OrtErrorCode code, const char *msg);            /* 0 */
    OrtErrorCode (ORT_API_CALL *GetErrorCode)(const OrtStatus *status);                      /* 1 */
    const char *(ORT_API_CALL *GetErrorMessage)(const OrtStatus *status);                    /* 2 */
    void *unused_3_25[23];  /* CreateEnv .. SetInterOpNumThreads */
    OrtStatus *(ORT_API_CALL *CreateCustomOpDomain)(const char *domain, OrtCustomOpDomain **out);       /* 26 */
    OrtStatus *(ORT_API_CALL *CustomOpDomain_Add)(OrtCustomOpDomain *domain, const OrtCustomOp *op);        /* 27 */
    OrtStatus *(ORT_API_CALL *AddCustomOpDomain)(OrtSessionOptions *options, OrtCustomOpDomain *domain);  /* 28 */
    void *unused_29_50[22];  /* RegisterCustomOpsLibrary .. IsTensor */
    OrtStatus *(ORT_API_CALL *GetTensorMutableData)(OrtValue *value, void **out);                      /* 51 */
    void *unused_52_59[8];   /* FillStringTensor .. SetDimensions */
    OrtStatus *(ORT_API_CALL *GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info,
                                                    ONNXTensorElementDataType *out);                  /* 60 */
    OrtStatus *(ORT_API_CALL *GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out); /* 61 */
    OrtStatus *(ORT_API_CALL *GetDimensions)(const OrtTensorTypeAndShapeInfo *info, int64_t *dim_values,
                                             size_t dim_values_length);                              /* 62 */
    void *unused_63_64[2];   /* GetSymbolicDimensions, GetTensorShapeElementCount */
    OrtStatus *(ORT_API_CALL *GetTensorTypeAndShape)(const OrtValue *value, OrtTensorTypeAndShapeInfo **out); /* 65 */
    void *unused_66_85[20];  /* GetTypeInfo .. KernelInfoGetAttribute_float */
    OrtStatus *(ORT_API_CALL *KernelInfoGetAttribute_int64)(const OrtKernelInfo *info, const char *name,
                                                            int64_t *out);                            /* 86 */
    void *unused_87;         /* KernelInfoGetAttribute_string */
    OrtStatus *(ORT_API_CALL *KernelContext_GetInputCount)(const OrtKernelContext *context, size_t *out);  /* 88 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetOutputCount)(const OrtKernelContext *context, size_t *out); /* 89 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetInput)(const OrtKernelContext *context, size_t index,
                                                      const OrtValue **out);                          /* 90 */
    OrtStatus *(ORT_API_CALL *KernelContext_GetOutput)(OrtKernelContext *context, size_t index,
                                                       const int64_t *dim_values, size_t dim_count,
                                                       OrtValue **out);                               /* 91 */
    void *unused_92;         /* ReleaseEnv */
    void (ORT_API_CALL *ReleaseStatus)(OrtStatus *status);                                             /* 93 */
    void *unused_94_98[5];   /* ReleaseMemoryInfo .. ReleaseTypeInfo */
    void (ORT_API_CALL *ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *info);               /* 99 */
    void *unused_100;        /* ReleaseSessionOptions */
    void (ORT_API_CALL *ReleaseCustomOpDomain)(OrtCustomOpDomain *domain);                             /* 101 */
    void *unused_102_229[128]; /* GetDenotationFromTypeInfo (v2) .. RegisterCustomOpsUsingFunction (v14) */
    OrtStatus *(ORT_API_CALL *KernelInfo_GetInputCount)(const OrtKernelInfo *info, size_t *out);       /* 230, v14 */
    void *unused_231;        /* KernelInfo_GetOutputCount */
    OrtStatus *(ORT_API_CALL *KernelInfo_GetInputName)(const OrtKernelInfo *info, size_t index, char *out,
                                                       size_t *size);                                 /* 232, v14 */
    void *unused_233_243[11]; /* KernelInfo_GetOutputName .. ReleaseDnnlProviderOptions */
    OrtStatus *(ORT_API_CALL *KernelInfo_GetNodeName)(const OrtKernelInfo *info, char *out,
                                                      size_t *size);                                 /* 244, v15 */
    void *unused_245_248[4]; /* KernelInfo_GetLogger .. Logger_GetLoggingSeverityLevel */
    OrtStatus *(ORT_API_CALL *KernelInfoGetConstantInput_tensor)(const OrtKernelInfo *info, size_t index,
                                                                 int *is_constant, const OrtValue **out); /* 249, v15 */
    /* later slots are not declared: this library never reads past 249 */
} OrtApi;

/* ORT_API_CALL function pointers and void * have the same size on every platform ORT supports. */
static_assert(sizeof(void (*)(void)) == sizeof(void *), "function and data pointers must have the same size");
#define PBS2P_ORT_SLOT(field, index) \
    static_assert(offsetof(OrtApi, field) / sizeof(void *) == (index), "OrtApi slot of " #field " must be " #index)
PBS2P_ORT_SLOT(CreateStatus, 0);
PBS2P_ORT_SLOT(GetErrorMessage, 2);
PBS2P_ORT_SLOT(CreateCustomOpDomain, 26);
PBS2P_ORT_SLOT(AddCustomOpDomain, 28);
PBS2P_ORT_SLOT(GetTensorMutableData, 51);
PBS2P_ORT_SLOT(GetTensorElementType, 60);
PBS2P_ORT_SLOT(GetDimensions, 62);
PBS2P_ORT_SLOT(GetTensorTypeAndShape, 65);
PBS2P_ORT_SLOT(KernelInfoGetAttribute_int64, 86);
PBS2P_ORT_SLOT(KernelContext_GetInputCount, 88);
PBS2P_ORT_SLOT(KernelContext_GetOutput, 91);
PBS2P_ORT_SLOT(ReleaseStatus, 93);
PBS2P_ORT_SLOT(ReleaseTensorTypeAndShapeInfo, 99);
PBS2P_ORT_SLOT(ReleaseCustomOpDomain, 101); /* last slot of API version 1 */
PBS2P_ORT_SLOT(KernelInfo_GetInputCount, 230);
PBS2P_ORT_SLOT(KernelInfo_GetInputName, 232);
PBS2P_ORT_SLOT(KernelInfo_GetNodeName, 244);
PBS2P_ORT_SLOT(KernelInfoGetConstantInput_tensor, 249);
static_assert(sizeof(OrtApi) == 250 * sizeof(void *), "OrtApi prefix must end at slot 249");

/* OrtApiBase is not versioned: two slots forever. */
typedef struct OrtApiBase {
    const OrtApi *(ORT_API_CALL *GetApi)(uint32_t version); /* NULL when this ORT lacks `version` */
    const char *(ORT_API_CALL *GetVersionString)(void);
} OrtApiBase;

/* ---- OrtCustomOp: versioned; ORT reads a field only when op->version is at least the version that added it --- */
struct OrtCustomOp {
    uint32_t version; /* the OrtApi version the op was written for; ORT hands CreateKernel* GetApi(version) */
    void *(ORT_API_CALL *CreateKernel)(const struct OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info);
    const char *(ORT_API_CALL *GetName)(const struct OrtCustomOp *op);
    const char *(ORT_API_CALL *GetExecutionProviderType)(const struct OrtCustomOp *op); /* NULL: CPU */
    ONNXTensorElementDataType (ORT_API_CALL *GetInputType)(const struct OrtCustomOp *op, size_t index);
    size_t (ORT_API_CALL *GetInputTypeCount)(const struct OrtCustomOp *op);
    ONNXTensorElementDataType (ORT_API_CALL *GetOutputType)(const struct OrtCustomOp *op, size_t index);
    size_t (ORT_API_CALL *GetOutputTypeCount)(const struct OrtCustomOp *op);
    void (ORT_API_CALL *KernelCompute)(void *op_kernel, OrtKernelContext *context);
    void (ORT_API_CALL *KernelDestroy)(void *op_kernel);
    /* version >= 8 */
    OrtCustomOpInputOutputCharacteristic (ORT_API_CALL *GetInputCharacteristic)(const struct OrtCustomOp *op,
                                                                                size_t index);
    OrtCustomOpInputOutputCharacteristic (ORT_API_CALL *GetOutputCharacteristic)(const struct OrtCustomOp *op,
                                                                                 size_t index);
    /* version >= 13 */
    OrtMemType (ORT_API_CALL *GetInputMemoryType)(const struct OrtCustomOp *op, size_t index);
    /* version >= 14 (read only for variadic inputs / outputs) */
    int (ORT_API_CALL *GetVariadicInputMinArity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicInputHomogeneity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicOutputMinArity)(const struct OrtCustomOp *op);
    int (ORT_API_CALL *GetVariadicOutputHomogeneity)(const struct OrtCustomOp *op);
    /* version >= 16: used instead of CreateKernel / KernelCompute when not NULL */
    OrtStatus *(ORT_API_CALL *CreateKernelV2)(const struct OrtCustomOp *op, const OrtApi *api,
                                              const OrtKernelInfo *info, void **kernel);
    OrtStatus *(ORT_API_CALL *KernelComputeV2)(void *op_kernel, OrtKernelContext *context);
    /* version >= 17 and later: InferOutputShapeFn, GetStartVersion, GetEndVersion, GetMayInplace,
     * ReleaseMayInplace, GetAliasMap, ReleaseAliasMap. Declared (NULL) so the struct has its full current size. */
    void *later[7];
};

static_assert(offsetof(OrtCustomOp, CreateKernel) == sizeof(void *), "OrtCustomOp: pointers follow the version");
static_assert(offsetof(OrtCustomOp, CreateKernelV2) == 17 * sizeof(void *), "OrtCustomOp: CreateKernelV2 slot");
static_assert(sizeof(OrtCustomOp) == 26 * sizeof(void *), "OrtCustomOp: full size as of ORT 1.25");

/* The entry point OrtSessionOptions::RegisterCustomOpsLibrary looks up by name (ort_op.c). */
PBS2P_API OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base);

#endif /* PBS2P_ORT_ABI_H */
