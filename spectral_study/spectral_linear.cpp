// SpectralLinear's forward and backward as C++ autograd ops:
// torch.ops.spectral_study.linear(x, phi, lambda_in, lambda_out, bias?) for both eigenvalue sets
// and torch.ops.spectral_study.receiving_linear(...) for the receiving set (λ_in a constant).
//
// Each does what its Python autograd.Function in spectral_study/spectral.py does
// (`_SpectralLinearFunction`, `_ReceivingLinearFunction`), call for call and in the same order,
// so both give the same bits; they exist because at small widths a Python function's bookkeeping
// (the autograd.Function, the checks, the ctypes calls) cost as much as its arithmetic. The fused
// loops are not compiled here: spectral_study/_native.py hands over the addresses of the ones
// `spectral_study._fused` built (`set_kernels`), so both paths run the same machine code. Where
// those loops cannot take the tensors (not CPU, not float32/64, mixed dtypes, not contiguous, or
// none handed over) the eager ATen operations of the Python fallback run instead. The receiving
// set needs no loops of its own: its work is the matrix products and vectors the size of the output.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <atomic>
#include <optional>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using WeightFn = void (*)(const void* phi, const void* lambda_in, const void* lambda_out, void* w,
                          int64_t members, int64_t rows, int64_t cols, int threads);
using GradsFn = void (*)(void* g, const void* phi, const void* lambda_in, const void* lambda_out,
                         void* grad_in, void* grad_out, int want_phi, int64_t members, int64_t rows,
                         int64_t cols, int threads, void* scratch);

struct Kernels {
  std::atomic<WeightFn> weight{nullptr};
  std::atomic<GradsFn> grads{nullptr};
};
Kernels kernels_f32, kernels_f64;
std::atomic<int64_t> threaded_elements{1 << 15};  // _fused._THREADED_ELEMENTS, handed over too
std::atomic<int64_t> block_rows{16};              // _fused._BLOCK: rows per partial column sum

// The fused loops for these tensors, or nullptr (as `_fused.kernels` decides).
const Kernels* fused_for(const Tensor& phi, const Tensor& lambda_in, const Tensor& lambda_out) {
  if (!phi.device().is_cpu() || !lambda_in.device().is_cpu() || !lambda_out.device().is_cpu()) return nullptr;
  const auto dtype = phi.scalar_type();
  if (lambda_in.scalar_type() != dtype || lambda_out.scalar_type() != dtype) return nullptr;
  if (!phi.is_contiguous() || !lambda_in.is_contiguous() || !lambda_out.is_contiguous()) return nullptr;
  const Kernels* k = dtype == at::kFloat ? &kernels_f32 : dtype == at::kDouble ? &kernels_f64 : nullptr;
  return k != nullptr && k->weight.load() != nullptr ? k : nullptr;
}

int threads_for(const Tensor& phi) {
  return phi.numel() >= threaded_elements.load() ? at::get_num_threads() : 1;
}

// λ_in[j] − λ_out[i] as a (..., out, in) tensor (spectral._scale).
Tensor scale(const Tensor& lambda_in, const Tensor& lambda_out) {
  return lambda_in.unsqueeze(-2) - lambda_out.unsqueeze(-1);
}

int64_t leading(const Tensor& phi) {  // members: the product of the dimensions before (out, in)
  int64_t n = 1;
  for (int64_t d = 0; d < phi.dim() - 2; ++d) n *= phi.size(d);
  return n;
}

// Per-thread memory for the two φ-sized tensors that never leave one call: W when ∂L/∂x is not
// needed (a first layer) and ∂L/∂W when ∂L/∂φ is not (φ frozen). Allocating them afresh every
// step made the allocator hand memory back to the system and fault it in again: at 784 → 2048
// with φ frozen, 230 page faults a step, about as long as the fused passes themselves.
thread_local Tensor weight_scratch, grad_scratch;

Tensor scratch_like(Tensor& slot, const Tensor& like) {
  if (!slot.defined() || slot.numel() < like.numel() || slot.scalar_type() != like.scalar_type()) {
    slot = Tensor();  // the old one first: never both held
    slot = at::empty({like.numel()}, like.options());
  }
  return (slot.numel() == like.numel() ? slot : slot.narrow(0, 0, like.numel())).view(like.sizes());
}

constexpr int64_t kFused = 1, kBias = 2;  // SpectralLinearFn's saved flags

// a · b: mm directly for 2-D operands (what matmul runs for them, so the same bits, without
// matmul's dispatch), matmul for members' batched operands.
Tensor product(const Tensor& a, const Tensor& b) { return a.dim() == 2 ? a.mm(b) : a.matmul(b); }

struct SpectralLinearFn : public torch::autograd::Function<SpectralLinearFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& phi, const Tensor& lambda_in,
                        const Tensor& lambda_out, const std::optional<Tensor>& bias) {
    const Kernels* k = fused_for(phi, lambda_in, lambda_out);
    Tensor weight;
    const bool keep_weight = x.requires_grad();
    if (k != nullptr) {
      weight = keep_weight ? at::empty_like(phi) : scratch_like(weight_scratch, phi);
      k->weight.load()(phi.const_data_ptr(), lambda_in.const_data_ptr(), lambda_out.const_data_ptr(),
                       weight.data_ptr(), leading(phi), phi.size(-2), phi.size(-1), threads_for(phi));
    } else {
      weight = phi * scale(lambda_in, lambda_out);
    }
    const bool has_bias = bias.has_value() && bias->defined();
    Tensor y;
    if (phi.dim() == 2) {
      y = has_bias ? at::addmm(*bias, x, weight.t()) : x.matmul(weight.t());
    } else {
      y = has_bias ? at::baddbmm(bias->unsqueeze(-2), x, weight.mT()) : at::bmm(x, weight.mT());
    }
    ctx->saved_data["flags"] = (k != nullptr ? kFused : 0) | (has_bias ? kBias : 0);  // one entry: a hash each
    // W is kept only for ∂L/∂x: a network's first layer (input: the data) holds one φ-sized tensor less.
    ctx->save_for_backward({x, phi, lambda_in, lambda_out, keep_weight ? weight : Tensor()});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &phi = saved[1], &lambda_in = saved[2], &lambda_out = saved[3];
    const Tensor& weight = saved[4];
    const Tensor& grad = grads[0];
    const int64_t flags = ctx->saved_data["flags"].toInt();
    const bool has_bias = flags & kBias;
    const bool need_x = ctx->needs_input_grad(0), need_phi = ctx->needs_input_grad(1);
    const bool need_in = ctx->needs_input_grad(2), need_out = ctx->needs_input_grad(3);
    const bool need_bias = has_bias && ctx->needs_input_grad(4);
    Tensor grad_x, grad_phi, grad_in, grad_out, grad_bias;
    if (need_x) grad_x = product(grad, weight);
    if (need_phi || need_in || need_out) {
      const Kernels* k = (flags & kFused) ? fused_for(phi, lambda_in, lambda_out) : nullptr;
      Tensor grad_weight;  // contiguous; fresh where it becomes ∂L/∂φ in place
      if (k != nullptr && !need_phi) {
        grad_weight = scratch_like(grad_scratch, phi);
        if (phi.dim() == 2) at::mm_out(grad_weight, grad.mT(), x); else at::bmm_out(grad_weight, grad.mT(), x);
      } else {
        grad_weight = product(grad.mT(), x);
      }
      if (k != nullptr) {
        const int64_t members = leading(phi), rows = phi.size(-2), cols = phi.size(-1);
        auto lead = phi.sizes().slice(0, phi.dim() - 2).vec();
        Tensor scratch;
        if (need_in) {
          auto shape = lead;
          shape.push_back(cols);
          grad_in = at::empty(shape, phi.options());
          scratch = at::empty({members * ((rows + block_rows.load() - 1) / block_rows.load()) * cols}, phi.options());
        }
        if (need_out) {
          auto shape = lead;
          shape.push_back(rows);
          grad_out = at::empty(shape, phi.options());
        }
        k->grads.load()(grad_weight.data_ptr(), phi.const_data_ptr(), lambda_in.const_data_ptr(),
                        lambda_out.const_data_ptr(), need_in ? grad_in.data_ptr() : nullptr,
                        need_out ? grad_out.data_ptr() : nullptr, need_phi, members, rows, cols,
                        threads_for(phi), need_in ? scratch.data_ptr() : nullptr);
      } else {  // spectral.spectral_weight_grads, eager
        if (need_in || need_out) {
          Tensor projected = grad_weight * phi;
          if (need_in) grad_in = projected.sum(-2);
          if (need_out) grad_out = projected.sum(-1).neg_();
        }
      }
      if (need_phi) grad_phi = k != nullptr ? grad_weight : grad_weight.mul_(scale(lambda_in, lambda_out));
    }
    if (need_bias) grad_bias = grad.sum(-2);
    return {grad_x, grad_phi, grad_in, grad_out, grad_bias};
  }
};

// The receiving set (λ_in a constant c, W = (c − λ_out[i]) φ[i, :]) without W:
// y = (c − λ_out) ⊙ (x φᵀ) + b, the bias added after the scale. Backward, with h = ∂L/∂y ⊙ s
// (s = c − λ_out): ∂L/∂x = h φ, ∂L/∂φ = hᵀ x, ∂L/∂λ_out = −Σ_batch ∂L/∂y ⊙ (x φᵀ), ∂L/∂b =
// Σ_batch ∂L/∂y. The same calls, in the same order, as `_ReceivingLinearFunction`
// (spectral_study/spectral.py), so the same bits; one node and a handful of calls where autograd
// ran the composite's five nodes and their broadcasting bookkeeping.
struct ReceivingLinearFn : public torch::autograd::Function<ReceivingLinearFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& phi, const Tensor& lambda_in,
                        const Tensor& lambda_out, const std::optional<Tensor>& bias) {
    const bool members = phi.dim() != 2, has_bias = bias.has_value() && bias->defined();
    Tensor scale = lambda_in.narrow(-1, 0, 1) - lambda_out;  // (..., out); no host sync to read c
    if (members) scale = scale.unsqueeze(-2);
    const Tensor z = product(x, phi.mT());
    Tensor y = has_bias ? at::addcmul(members ? bias->unsqueeze(-2) : *bias, z, scale) : z * scale;
    ctx->saved_data["bias"] = has_bias;  // no bias: no fifth input for needs_input_grad to index
    // x φᵀ is kept only for ∂L/∂λ_out. (Not needs_input_grad: a call without any input that
    // needs a gradient has no edges to ask about.)
    ctx->save_for_backward({x, phi, scale, lambda_out.requires_grad() ? z : Tensor()});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &phi = saved[1], &scale = saved[2], &z = saved[3];
    const Tensor& grad = grads[0];
    Tensor grad_x, grad_phi, grad_out, grad_bias;
    if (ctx->needs_input_grad(0) || ctx->needs_input_grad(1)) {
      const Tensor h = grad * scale;
      if (ctx->needs_input_grad(0)) grad_x = product(h, phi);
      if (ctx->needs_input_grad(1)) grad_phi = product(h.mT(), x);
    }
    if (ctx->needs_input_grad(3)) grad_out = (grad * z).sum(-2).neg_();
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(4)) grad_bias = grad.sum(-2);
    return {grad_x, grad_phi, Tensor(), grad_out, grad_bias};
  }
};

Tensor spectral_linear(const Tensor& x, const Tensor& phi, const Tensor& lambda_in, const Tensor& lambda_out,
                       const std::optional<Tensor>& bias) {
  return SpectralLinearFn::apply(x, phi, lambda_in, lambda_out, bias);
}

Tensor receiving_linear(const Tensor& x, const Tensor& phi, const Tensor& lambda_in, const Tensor& lambda_out,
                        const std::optional<Tensor>& bias) {
  return ReceivingLinearFn::apply(x, phi, lambda_in, lambda_out, bias);
}

// The fused loops' addresses (0: none for that dtype) and the sizes they were built with.
void set_kernels(int64_t weight_f32, int64_t grads_f32, int64_t weight_f64, int64_t grads_f64,
                 int64_t threaded, int64_t block) {
  threaded_elements.store(threaded);
  block_rows.store(block);
  kernels_f32.grads.store(reinterpret_cast<GradsFn>(grads_f32));
  kernels_f32.weight.store(reinterpret_cast<WeightFn>(weight_f32));
  kernels_f64.grads.store(reinterpret_cast<GradsFn>(grads_f64));
  kernels_f64.weight.store(reinterpret_cast<WeightFn>(weight_f64));
}

}  // namespace

TORCH_LIBRARY(spectral_study, m) {
  m.def("linear(Tensor x, Tensor phi, Tensor lambda_in, Tensor lambda_out, Tensor? bias) -> Tensor");
  m.def("receiving_linear(Tensor x, Tensor phi, Tensor lambda_in, Tensor lambda_out, Tensor? bias) -> Tensor");
  m.def("set_kernels(int weight_f32, int grads_f32, int weight_f64, int grads_f64, int threaded, int block) -> ()",
        &set_kernels);
}

TORCH_LIBRARY_IMPL(spectral_study, CompositeImplicitAutograd, m) {
  m.impl("linear", &spectral_linear);
  m.impl("receiving_linear", &receiving_linear);
}
