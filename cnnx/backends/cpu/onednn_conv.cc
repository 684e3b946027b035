// 2-D convolutions (dense, grouped, depthwise) on the CPU through oneDNN, as XLA FFI handlers.
//
// Layouts are the ones cnnx's models use, so no activation is ever transposed: inputs and
// outputs NHWC, kernels HWIO (Flax's (KH, KW, C/G, O), output channels group-major; for oneDNN
// the grouped kernel is `hwigo`). Each handler lets oneDNN choose its preferred kernel layout
// (`format_tag::any`) and reorders the kernel to or from HWIO around the call, as torch's
// channels-last CPU path does. Primitives are built once per shape and kept.
//
// Handlers (all operands float32, or all bfloat16):
//   cnnx_onednn_conv_fwd          (x, w)   -> y
//   cnnx_onednn_conv_bwd_data     (dy, w)  -> dx
//   cnnx_onednn_conv_bwd_weights  (x, dy)  -> dw
// Attributes: strides[2], padding_lo[2], padding_hi[2], dilation[2] (XLA's: 1 = dense), groups.
// Built and used by cnnx/backends/cpu/onednn.py (with onednn_matmul.cc, into one library).

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "onednn_ffi.h"

namespace ffi = xla::ffi;
using cnnx_onednn::Engine;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

namespace {

enum class Op { kForward, kBackwardData, kBackwardWeights };

struct Geometry {
  int64_t n, h, w, c;        // input
  int64_t oh, ow, o;         // output
  int64_t kh, kw, groups;    // kernel
  int64_t sh, sw, pt, pl, pb, pr, dh, dw;  // XLA dilation (1 = dense)
  dnnl::memory::data_type type;

  std::string key(Op op) const {
    std::string k(reinterpret_cast<const char*>(this), sizeof(*this));
    k.push_back(static_cast<char>(op));
    return k;
  }
  dnnl::memory::desc src(tag t = tag::nhwc) const { return {{n, c, h, w}, type, t}; }
  dnnl::memory::desc dst(tag t = tag::nhwc) const { return {{n, o, oh, ow}, type, t}; }
  dnnl::memory::desc weights(tag t) const {
    if (groups == 1) return {{o, c, kh, kw}, type, t == tag::any ? t : tag::hwio};
    return {{groups, o / groups, c / groups, kh, kw}, type, t == tag::any ? t : tag::hwigo};
  }
  dims strides() const { return {sh, sw}; }
  dims dilates() const { return {dh - 1, dw - 1}; }  // oneDNN counts the gaps
  dims pad_lo() const { return {pt, pl}; }
  dims pad_hi() const { return {pb, pr}; }
};

// A primitive with the reorder between the user's HWIO kernel and the primitive's layout.
struct Plan {
  dnnl::primitive conv;
  dnnl::memory::desc weights_md;  // the primitive's kernel layout
  dnnl::memory::desc user_weights_md;
  dnnl::reorder reorder;          // HWIO -> weights_md (fwd, bwd data) or back (bwd weights)
  bool needs_reorder;
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      g.src(), g.weights(tag::any), g.dst(), g.strides(), g.dilates(), g.pad_lo(),
      g.pad_hi());
}

dnnl::convolution_backward_data::primitive_desc BackwardDataDesc(
    const Geometry& g, const dnnl::convolution_forward::primitive_desc& hint) {
  return dnnl::convolution_backward_data::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.src(), g.weights(tag::any), g.dst(),
      g.strides(), g.dilates(), g.pad_lo(), g.pad_hi(), hint);
}

dnnl::convolution_backward_weights::primitive_desc BackwardWeightsDesc(
    const Geometry& g, const dnnl::convolution_forward::primitive_desc& hint) {
  return dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.src(), g.weights(tag::any), g.dst(),
      g.strides(), g.dilates(), g.pad_lo(), g.pad_hi(), hint);
}

std::unique_ptr<Plan> MakePlan(const Geometry& g, Op op) {
  auto plan = std::make_unique<Plan>();
  plan->user_weights_md = g.weights(tag::hwio);
  auto fwd = ForwardDesc(g);
  if (op == Op::kForward) {
    plan->conv = dnnl::convolution_forward(fwd);
    plan->weights_md = fwd.weights_desc();
  } else if (op == Op::kBackwardData) {
    auto pd = BackwardDataDesc(g, fwd);
    plan->conv = dnnl::convolution_backward_data(pd);
    plan->weights_md = pd.weights_desc();
  } else {
    auto pd = BackwardWeightsDesc(g, fwd);
    plan->conv = dnnl::convolution_backward_weights(pd);
    plan->weights_md = pd.diff_weights_desc();
  }
  plan->needs_reorder = plan->weights_md != plan->user_weights_md;
  if (plan->needs_reorder) {
    if (op == Op::kBackwardWeights) {
      plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          Engine(), plan->weights_md, Engine(), plan->user_weights_md));
    } else {
      plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          Engine(), plan->user_weights_md, Engine(), plan->weights_md));
    }
  }
  return plan;
}

const Plan& GetPlan(const Geometry& g, Op op) {  // called under ExecutionMutex
  static std::unordered_map<std::string, std::unique_ptr<Plan>> plans;
  std::string key = g.key(op);
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, MakePlan(g, op)).first;
  return *it->second;
}

// The kernel in the primitive's layout (calls are serialised, see Guarded).
void* Scratch(size_t bytes) {
  static std::vector<char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

ffi::Error Invalid(const std::string& message) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "cnnx oneDNN convolution: " + message);
}

// Reads the geometry from the input (NHWC), kernel (HWIO) and output (NHWC) shapes.
ffi::Error ReadGeometry(ffi::AnyBuffer::Dimensions x, ffi::AnyBuffer::Dimensions w,
                        ffi::AnyBuffer::Dimensions y, ffi::DataType type,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                        ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                        int64_t groups, Geometry* g) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4) return Invalid("operands must be 4-D");
  if (strides.size() != 2 || padding_lo.size() != 2 || padding_hi.size() != 2 ||
      dilation.size() != 2)
    return Invalid("strides, padding and dilation need two entries each");
  std::memset(g, 0, sizeof(*g));  // the key reads the struct's bytes, padding included
  if (type == ffi::DataType::F32) {
    g->type = dnnl::memory::data_type::f32;
  } else if (type == ffi::DataType::BF16) {
    g->type = dnnl::memory::data_type::bf16;
  } else {
    return Invalid("only float32 and bfloat16 are supported");
  }
  g->n = x[0], g->h = x[1], g->w = x[2], g->c = x[3];
  g->kh = w[0], g->kw = w[1], g->o = w[3], g->groups = groups;
  g->oh = y[1], g->ow = y[2];
  g->sh = strides[0], g->sw = strides[1];
  g->pt = padding_lo[0], g->pl = padding_lo[1], g->pb = padding_hi[0], g->pr = padding_hi[1];
  g->dh = dilation[0], g->dw = dilation[1];
  if (groups < 1 || g->c % groups || g->o % groups || w[2] * groups != g->c)
    return Invalid("kernel input channels times groups must equal the input's channels");
  if (y[0] != g->n || y[3] != g->o) return Invalid("output shape does not match the operands");
  return ffi::Error::Success();
}

template <typename F>
ffi::Error Guarded(F&& body) {
  return cnnx_onednn::Guarded("cnnx oneDNN convolution", std::forward<F>(body));
}

// Runs a plan whose kernel is an input (forward, input gradient), reordering the user's HWIO
// kernel into the primitive's layout first when the two differ.
void ExecuteWithKernel(const Plan& plan, void* kernel,
                       std::unordered_map<int, dnnl::memory> args) {
  dnnl::stream stream(Engine());
  dnnl::memory user_w(plan.user_weights_md, Engine(), kernel);
  dnnl::memory weights = user_w;
  if (plan.needs_reorder) {
    weights = dnnl::memory(plan.weights_md, Engine(), Scratch(plan.weights_md.get_size()));
    plan.reorder.execute(stream, user_w, weights);
  }
  args[DNNL_ARG_WEIGHTS] = weights;
  plan.conv.execute(stream, args);
  stream.wait();
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                   ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                   ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                   int64_t groups) {
  if (x.element_type() != w.element_type()) return Invalid("operand dtypes differ");
  Geometry g;
  if (auto e = ReadGeometry(x.dimensions(), w.dimensions(), y->dimensions(), x.element_type(),
                            strides, padding_lo, padding_hi, dilation, groups, &g);
      e.failure())
    return e;
  return Guarded([&] {
    ExecuteWithKernel(GetPlan(g, Op::kForward), w.untyped_data(),
                      {{DNNL_ARG_SRC, dnnl::memory(g.src(), Engine(), x.untyped_data())},
                       {DNNL_ARG_DST, dnnl::memory(g.dst(), Engine(), y->untyped_data())}});
  });
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                        ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                        int64_t groups) {
  if (dy.element_type() != w.element_type()) return Invalid("operand dtypes differ");
  Geometry g;
  if (auto e = ReadGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(),
                            dy.element_type(), strides, padding_lo, padding_hi, dilation,
                            groups, &g);
      e.failure())
    return e;
  return Guarded([&] {
    ExecuteWithKernel(
        GetPlan(g, Op::kBackwardData), w.untyped_data(),
        {{DNNL_ARG_DIFF_SRC, dnnl::memory(g.src(), Engine(), dx->untyped_data())},
         {DNNL_ARG_DIFF_DST, dnnl::memory(g.dst(), Engine(), dy.untyped_data())}});
  });
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                           ffi::Span<const int64_t> strides,
                           ffi::Span<const int64_t> padding_lo,
                           ffi::Span<const int64_t> padding_hi,
                           ffi::Span<const int64_t> dilation, int64_t groups) {
  if (x.element_type() != dy.element_type()) return Invalid("operand dtypes differ");
  Geometry g;
  if (auto e = ReadGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(),
                            x.element_type(), strides, padding_lo, padding_hi, dilation, groups,
                            &g);
      e.failure())
    return e;
  return Guarded([&] {
    const Plan& plan = GetPlan(g, Op::kBackwardWeights);
    dnnl::stream stream(Engine());
    dnnl::memory src(g.src(), Engine(), x.untyped_data());
    dnnl::memory diff_dst(g.dst(), Engine(), dy.untyped_data());
    dnnl::memory user_dw(plan.user_weights_md, Engine(), dw->untyped_data());
    dnnl::memory diff_weights = user_dw;
    if (plan.needs_reorder) {
      diff_weights =
          dnnl::memory(plan.weights_md, Engine(), Scratch(plan.weights_md.get_size()));
    }
    plan.conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, diff_weights}});
    if (plan.needs_reorder) plan.reorder.execute(stream, diff_weights, user_dw);
    stream.wait();
  });
}

}  // namespace

#define CNNX_CONV_ATTRS                                      \
  .Attr<ffi::Span<const int64_t>>("strides")                 \
      .Attr<ffi::Span<const int64_t>>("padding_lo")          \
      .Attr<ffi::Span<const int64_t>>("padding_hi")          \
      .Attr<ffi::Span<const int64_t>>("dilation")            \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnx_onednn_conv_fwd, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CNNX_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnx_onednn_conv_bwd_data, BackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CNNX_CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnx_onednn_conv_bwd_weights, BackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CNNX_CONV_ATTRS);

// The implementation oneDNN picks for `op` (0 forward, 1 input gradient, 2 weight gradient) of
// a convolution: `geometry` holds n, h, w, c, oh, ow, o, kh, kw, groups, sh, sw, pt, pl, pb, pr,
// dh, dw (Geometry's fields); `bfloat16` selects the dtype (else float32). Writes e.g.
// "brgconv:avx512_core" or "gemm:jit" to `out`; returns 0, or -1 (message in `out`) when
// oneDNN has no implementation.
extern "C" int cnnx_onednn_implementation(const int64_t* geometry, int bfloat16, int op,
                                          char* out, int out_size) {
  Geometry g;
  std::memset(&g, 0, sizeof(g));
  int64_t* fields[] = {&g.n,  &g.h,  &g.w,  &g.c,  &g.oh, &g.ow, &g.o,  &g.kh, &g.kw,
                       &g.groups, &g.sh, &g.sw, &g.pt, &g.pl, &g.pb, &g.pr, &g.dh, &g.dw};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) *fields[i] = geometry[i];
  g.type = bfloat16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  std::string name;
  int status = 0;
  try {
    auto fwd = ForwardDesc(g);
    // The same descriptors MakePlan builds, so the answer is what a call would run.
    if (op == 0) {
      name = fwd.impl_info_str();
    } else if (op == 1) {
      name = BackwardDataDesc(g, fwd).impl_info_str();
    } else {
      name = BackwardWeightsDesc(g, fwd).impl_info_str();
    }
  } catch (const dnnl::error& e) {
    name = e.what();
    status = -1;
  }
  std::snprintf(out, out_size, "%s", name.c_str());
  return status;
}

extern "C" const char* cnnx_onednn_version() {
  static std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }();
  return version.c_str();
}
