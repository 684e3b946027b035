// Dense matrix products on the CPU through oneDNN's matmul primitive, as an XLA FFI handler.
//
//   cnnx_onednn_matmul  (a, b) -> c = op(a) @ op(b)
// a: (M, K), or (K, M) with transpose_a; b: (K, N), or (N, K) with transpose_b; c: (M, N);
// all row-major, all float32 or all bfloat16. A transposed operand is read in place (its
// memory descriptor's strides swapped), so the gradients of c = a @ b, dc @ b^T and a^T @ dc,
// are the same handler with no copy. Primitives are built once per shape and kept; calls are
// serialised with the convolutions' (onednn_ffi.h). Used by cnnx/backends/cpu/dense.py.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "onednn_ffi.h"

namespace ffi = xla::ffi;
using cnnx_onednn::Engine;
using tag = dnnl::memory::format_tag;

namespace {

struct Shape {
  int64_t m, k, n, transpose_a, transpose_b;
  dnnl::memory::data_type type;

  std::string key() const { return std::string(reinterpret_cast<const char*>(this), sizeof(*this)); }
};

dnnl::matmul::primitive_desc Desc(const Shape& s) {
  dnnl::memory::desc a({s.m, s.k}, s.type, s.transpose_a ? tag::ba : tag::ab);
  dnnl::memory::desc b({s.k, s.n}, s.type, s.transpose_b ? tag::ba : tag::ab);
  dnnl::memory::desc c({s.m, s.n}, s.type, tag::ab);
  return dnnl::matmul::primitive_desc(Engine(), a, b, c);
}

const dnnl::matmul& GetPrimitive(const Shape& s) {  // called under ExecutionMutex
  static std::unordered_map<std::string, std::unique_ptr<dnnl::matmul>> primitives;
  auto it = primitives.find(s.key());
  if (it == primitives.end())
    it = primitives.emplace(s.key(), std::make_unique<dnnl::matmul>(Desc(s))).first;
  return *it->second;
}

ffi::Error Invalid(const std::string& message) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "cnnx oneDNN matmul: " + message);
}

ffi::Error Matmul(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c,
                  int64_t transpose_a, int64_t transpose_b) {
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 2 || bd.size() != 2 || cd.size() != 2) return Invalid("operands must be 2-D");
  if (a.element_type() != b.element_type() || a.element_type() != c->element_type())
    return Invalid("operand dtypes differ");
  Shape s;
  std::memset(&s, 0, sizeof(s));  // the key reads the struct's bytes, padding included
  if (a.element_type() == ffi::DataType::F32) {
    s.type = dnnl::memory::data_type::f32;
  } else if (a.element_type() == ffi::DataType::BF16) {
    s.type = dnnl::memory::data_type::bf16;
  } else {
    return Invalid("only float32 and bfloat16 are supported");
  }
  s.transpose_a = transpose_a != 0, s.transpose_b = transpose_b != 0;
  s.m = cd[0], s.n = cd[1];
  s.k = s.transpose_a ? ad[0] : ad[1];
  if ((s.transpose_a ? ad[1] : ad[0]) != s.m || (s.transpose_b ? bd[1] : bd[0]) != s.k ||
      (s.transpose_b ? bd[0] : bd[1]) != s.n)
    return Invalid("shapes do not multiply into the result's");
  return cnnx_onednn::Guarded("cnnx oneDNN matmul", [&] {
    const dnnl::matmul& primitive = GetPrimitive(s);
    dnnl::stream stream(Engine());
    auto desc = [&](int64_t rows, int64_t cols, bool transposed) {
      return dnnl::memory::desc({rows, cols}, s.type, transposed ? tag::ba : tag::ab);
    };
    primitive.execute(
        stream,
        {{DNNL_ARG_SRC, dnnl::memory(desc(s.m, s.k, s.transpose_a), Engine(), a.untyped_data())},
         {DNNL_ARG_WEIGHTS,
          dnnl::memory(desc(s.k, s.n, s.transpose_b), Engine(), b.untyped_data())},
         {DNNL_ARG_DST, dnnl::memory(desc(s.m, s.n, false), Engine(), c->untyped_data())}});
    stream.wait();
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnx_onednn_matmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("transpose_a")
                                  .Attr<int64_t>("transpose_b"));

// The implementation oneDNN picks for an (M x K) @ (K x N) product (`transpose_*` as the
// handler's; `bfloat16` selects the dtype, else float32), e.g. "brg_matmul:avx512_core", into
// `out`; returns 0, or -1 (message in `out`) when oneDNN has none.
extern "C" int cnnx_onednn_matmul_implementation(int64_t m, int64_t k, int64_t n,
                                                 int transpose_a, int transpose_b, int bfloat16,
                                                 char* out, int out_size) {
  Shape s;
  std::memset(&s, 0, sizeof(s));
  s.m = m, s.k = k, s.n = n, s.transpose_a = transpose_a != 0, s.transpose_b = transpose_b != 0;
  s.type = bfloat16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  std::string name;
  int status = 0;
  try {
    name = Desc(s).impl_info_str();
  } catch (const dnnl::error& e) {
    name = e.what();
    status = -1;
  }
  std::snprintf(out, out_size, "%s", name.c_str());
  return status;
}
