#include "model/head.hpp"

#include "common/error.hpp"

namespace pgolf::model {

namespace {

// The logits of the rows (normalised first with s.norm), before the loss.
template <class T>
void head_logits(backend::Ops<T>& ops, const HeadShape<T>& s, const T* x, const T* w, const HeadActs<T>& a) {
  const T* h = x;
  if (s.norm) {
    ops.rmsnorm_forward(a.h, a.rstd, x, s.rows, s.dim, T(1));
    h = a.h;
  }
  ops.matmul_forward(a.logits, h, w, s.rows, s.dim, s.vocab, false);
}

// From dlogits in a.logits back through the projection (and the norm).
template <class T>
void head_projection_backward(backend::Ops<T>& ops, const HeadShape<T>& s, T* dx, T* dw, T* dh, const T* x, const T* w,
                              const HeadActs<T>& a, const T* row_weight) {
  // The row weights scale the gradient after the projection's backward, which has already
  // added the unweighted weight gradient: the two together would be wrong.
  if (row_weight != nullptr && dw != nullptr)
    fail(ErrorKind::internal, "head backward: row weights apply to the input gradient only (dw must be null)");
  T* d_in = s.norm ? dh : dx;  // the gradient of the projection's input
  ops.matmul_backward(d_in, dw, a.logits, s.norm ? a.h : x, w, s.rows, s.dim, s.vocab, false);
  if (row_weight != nullptr) ops.scale_rows(d_in, row_weight, s.rows, s.dim);
  if (s.norm) ops.rmsnorm_backward(dx, dh, x, a.rstd, s.rows, s.dim, T(1), false);
}

}  // namespace

template <class T>
void head_forward(backend::Ops<T>& ops, const HeadShape<T>& s, const T* x, const T* w, const std::int32_t* targets,
                  const HeadActs<T>& a) {
  head_logits(ops, s, x, w, a);
  ops.softcap_ce_forward(a.logits, a.nll, a.loss_sum, targets, s.rows, s.vocab, s.softcap);
}

template <class T>
void head_backward(backend::Ops<T>& ops, const HeadShape<T>& s, T* dx, T* dw, T* dh, const T* x, const T* w,
                   const std::int32_t* targets, const HeadActs<T>& a, T scale, const T* row_weight) {
  ops.softcap_ce_backward(a.logits, a.logits, targets, s.rows, s.vocab, s.softcap, scale);
  head_projection_backward(ops, s, dx, dw, dh, x, w, a, row_weight);
}

template <class T>
void head_forward_backward(backend::Ops<T>& ops, const HeadShape<T>& s, T* dx, T* dw, T* dh, const T* x, const T* w,
                           const std::int32_t* targets, const HeadActs<T>& a, T scale, const T* row_weight) {
  head_logits(ops, s, x, w, a);
  ops.softcap_ce_fused(a.logits, a.nll, a.loss_sum, targets, s.rows, s.vocab, s.softcap, scale);
  head_projection_backward(ops, s, dx, dw, dh, x, w, a, row_weight);
}

#define PGOLF_HEAD_INSTANTIATE(T)                                                                                     \
  template void head_forward<T>(backend::Ops<T>&, const HeadShape<T>&, const T*, const T*, const std::int32_t*,       \
                                const HeadActs<T>&);                                                                  \
  template void head_backward<T>(backend::Ops<T>&, const HeadShape<T>&, T*, T*, T*, const T*, const T*,               \
                                 const std::int32_t*, const HeadActs<T>&, T, const T*);                               \
  template void head_forward_backward<T>(backend::Ops<T>&, const HeadShape<T>&, T*, T*, T*, const T*, const T*,       \
                                         const std::int32_t*, const HeadActs<T>&, T, const T*);
PGOLF_HEAD_INSTANTIATE(float)
PGOLF_HEAD_INSTANTIATE(double)
#undef PGOLF_HEAD_INSTANTIATE

}  // namespace pgolf::model
