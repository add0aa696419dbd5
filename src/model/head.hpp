#pragma once
// The output head (docs/model.md steps 10-11) as one chain of ops, shared by the model and by
// SLOT's refitted head (eval/slot.cpp): an optional RMSNorm of the rows, the projection onto
// the vocabulary, and the softcapped cross-entropy of each row's target.
#include <cstdint>

#include "backend/ops.hpp"

namespace pgolf::model {

template <class T>
struct HeadShape {
  int rows = 0, dim = 0, vocab = 0;
  bool norm = true;  // normalise the rows first (the model's final norm)
  T softcap = T(30);
};

// The head's buffers (device pointers): h and rstd only with norm; nll may be null.
template <class T>
struct HeadActs {
  T* h = nullptr;         // rows x dim: the normalised rows
  T* rstd = nullptr;      // rows
  T* logits = nullptr;    // rows x vocab: softcapped in place
  T* nll = nullptr;       // rows
  T* loss_sum = nullptr;  // one value: the sum of nll
};

// logits and NLLs of the rows x (rows x dim) against w (vocab x dim).
template <class T>
void head_forward(backend::Ops<T>& ops, const HeadShape<T>& s, const T* x, const T* w, const std::int32_t* targets,
                  const HeadActs<T>& a);

// From the last head_forward on x: dx (written) = d(scale * sum nll)/dx, and dw += its weight
// gradient when dw is not null. The gradient of the logits replaces them in a.logits (one
// rows x vocab buffer); dh (rows x dim, norm only) is scratch. A row_weight (device vector of
// rows, may be null) scales each row's gradient after the projection: the head is linear in a
// row's dlogits, so this is the input gradient of the weighted sum of NLLs (SLOT's fit mask);
// dw must then be null (Error(internal)).
template <class T>
void head_backward(backend::Ops<T>& ops, const HeadShape<T>& s, T* dx, T* dw, T* dh, const T* x, const T* w,
                   const std::int32_t* targets, const HeadActs<T>& a, T scale, const T* row_weight = nullptr);

// head_forward then head_backward with the loss's forward and backward as one fused op
// (backend FusedOp::softcap_ce, which the caller checked): the same values.
template <class T>
void head_forward_backward(backend::Ops<T>& ops, const HeadShape<T>& s, T* dx, T* dw, T* dh, const T* x, const T* w,
                           const std::int32_t* targets, const HeadActs<T>& a, T scale, const T* row_weight = nullptr);

}  // namespace pgolf::model
