// A host double of the NCCL subset pgolf uses, for the emulated build (declarations: the
// real <nccl.h>). One rank is handled in process: every collective over one contribution
// is a copy. Several ranks (processes started by mpirun) go over MPI when the emulator is
// built with it: each collective gathers every rank's bytes and reduces them in rank order,
// so all ranks get bit-identical results whatever the reduction (a stricter contract than
// NCCL's, which the tests can rely on). Unknown data types and ops are refused loudly.
#include <nccl.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(PGOLF_EMU_WITH_MPI)
#include <mpi.h>
#endif

#include "emu/cuda_runtime_double.hpp"
#include "emu/runtime.hpp"

struct ncclComm {
  int nranks = 1;
  int rank = 0;
#if defined(PGOLF_EMU_WITH_MPI)
  MPI_Comm mpi = MPI_COMM_NULL;
#endif
};

namespace pgolf::emu {
namespace {

std::size_t element_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: throw Error("NCCL double: data type " + std::to_string(static_cast<int>(t)) + " is not one of NCCL's");
  }
}

ncclResult_t copy(const void* send, void* recv, std::size_t count, ncclDataType_t type, ncclComm_t comm) {
  if (comm == nullptr || send == nullptr || recv == nullptr) return ncclInvalidArgument;
  const std::size_t bytes = count * element_size(type);
  if (send != recv) std::memmove(recv, send, bytes);
  return ncclSuccess;
}

ncclResult_t check_op(ncclRedOp_t op) {
  switch (op) {
    case ncclSum: case ncclProd: case ncclMax: case ncclMin: case ncclAvg: return ncclSuccess;
    default: throw Error("NCCL double: reduction op " + std::to_string(static_cast<int>(op)) + " is not supported");
  }
}

#if defined(PGOLF_EMU_WITH_MPI)

// out[i] = op over ranks r = 0, 1, ... of in[r][i], computed in the element type (bf16 and
// half through float, rounded once per step as NCCL's kernels do).
template <class T, class Load, class Store>
void reduce_typed(const unsigned char* all, std::size_t count, int nranks, ncclRedOp_t op, void* out, Load load,
                  Store store) {
  const std::size_t stride = count * sizeof(T);
  for (std::size_t i = 0; i < count; ++i) {
    auto acc = load(all, i);
    for (int r = 1; r < nranks; ++r) {
      const auto v = load(all + static_cast<std::size_t>(r) * stride, i);
      switch (op) {
        case ncclSum: case ncclAvg: acc = static_cast<decltype(acc)>(acc + v); break;
        case ncclProd: acc = static_cast<decltype(acc)>(acc * v); break;
        case ncclMax: acc = v > acc ? v : acc; break;
        case ncclMin: acc = v < acc ? v : acc; break;
        default: break;
      }
    }
    if (op == ncclAvg) acc = static_cast<decltype(acc)>(acc / static_cast<decltype(acc)>(nranks));
    store(out, i, acc);
  }
}

template <class T>
void reduce_native(const unsigned char* all, std::size_t count, int nranks, ncclRedOp_t op, void* out) {
  reduce_typed<T>(
      all, count, nranks, op, out,
      [](const unsigned char* base, std::size_t i) {
        T v;
        std::memcpy(&v, base + i * sizeof(T), sizeof v);
        return v;
      },
      [](void* o, std::size_t i, T v) { std::memcpy(static_cast<unsigned char*>(o) + i * sizeof(T), &v, sizeof v); });
}

template <class H, class ToFloat, class FromFloat>
void reduce_half(const unsigned char* all, std::size_t count, int nranks, ncclRedOp_t op, void* out, ToFloat to_float,
                 FromFloat from_float) {
  reduce_typed<H>(
      all, count, nranks, op, out,
      [&](const unsigned char* base, std::size_t i) {
        H v;
        std::memcpy(&v, base + i * sizeof(H), sizeof v);
        return to_float(v);
      },
      [&](void* o, std::size_t i, float v) {
        const H h = from_float(v);
        std::memcpy(static_cast<unsigned char*>(o) + i * sizeof(H), &h, sizeof h);
      });
}

void reduce(const unsigned char* all, std::size_t count, int nranks, ncclDataType_t type, ncclRedOp_t op, void* out) {
  switch (type) {
    case ncclInt8: reduce_native<std::int8_t>(all, count, nranks, op, out); break;
    case ncclUint8: reduce_native<std::uint8_t>(all, count, nranks, op, out); break;
    case ncclInt32: reduce_native<std::int32_t>(all, count, nranks, op, out); break;
    case ncclUint32: reduce_native<std::uint32_t>(all, count, nranks, op, out); break;
    case ncclInt64: reduce_native<std::int64_t>(all, count, nranks, op, out); break;
    case ncclUint64: reduce_native<std::uint64_t>(all, count, nranks, op, out); break;
    case ncclFloat32: reduce_native<float>(all, count, nranks, op, out); break;
    case ncclFloat64: reduce_native<double>(all, count, nranks, op, out); break;
    case ncclFloat16:
      reduce_half<__half>(all, count, nranks, op, out, [](__half h) { return __half2float(h); },
                          [](float f) { return __float2half(f); });
      break;
    case ncclBfloat16:
      reduce_half<__nv_bfloat16>(all, count, nranks, op, out, [](__nv_bfloat16 h) { return __bfloat162float(h); },
                                 [](float f) { return __float2bfloat16(f); });
      break;
    default: throw Error("NCCL double: reductions of data type " + std::to_string(static_cast<int>(type)) +
                         " are not supported over MPI");
  }
}

// Every rank's `bytes` bytes, in rank order.
std::vector<unsigned char> gather_all(const void* send, std::size_t bytes, ncclComm_t comm) {
  if (bytes > static_cast<std::size_t>(INT32_MAX)) throw Error("NCCL double: a collective over 2 GiB per rank");
  std::vector<unsigned char> all(bytes * static_cast<std::size_t>(comm->nranks));
  MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, all.data(), static_cast<int>(bytes), MPI_BYTE, comm->mpi);
  return all;
}

#endif

}  // namespace
}  // namespace pgolf::emu

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return ncclInvalidArgument;
  std::memset(id, 0, sizeof *id);
  std::memcpy(id->internal, "pgolf-emu", 9);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId, int rank) {
  if (comm == nullptr || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto* c = new ncclComm;
  c->nranks = nranks;
  c->rank = rank;
  if (nranks > 1) {
#if defined(PGOLF_EMU_WITH_MPI)
    int initialized = 0, world = 0, me = -1;
    MPI_Initialized(&initialized);
    if (initialized != 0) {
      MPI_Comm_size(MPI_COMM_WORLD, &world);
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
    }
    if (initialized == 0 || world != nranks || me != rank) {
      delete c;
      throw pgolf::emu::Error("NCCL double: a communicator of " + std::to_string(nranks) + " ranks (this one rank " +
                              std::to_string(rank) + ") needs MPI initialised with the same world size and rank (" +
                              (initialized == 0 ? std::string("MPI is not initialised")
                                                : "world size " + std::to_string(world) + ", rank " + std::to_string(me)) +
                              ")");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
#else
    delete c;
    throw pgolf::emu::Error("NCCL double: a communicator of " + std::to_string(nranks) +
                            " ranks needs the MPI transport, and this emulator was built without MPI");
#endif
  }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
#if defined(PGOLF_EMU_WITH_MPI)
  if (comm != nullptr && comm->mpi != MPI_COMM_NULL) MPI_Comm_free(&comm->mpi);
#endif
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (comm == nullptr || count == nullptr) return ncclInvalidArgument;
  *count = comm->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (comm == nullptr || rank == nullptr) return ncclInvalidArgument;
  *rank = comm->rank;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument";
    default: return "NCCL error (emulator double)";
  }
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t) {
  pgolf::emu::DeviceAccess device_memory_open;
  pgolf::emu::check_op(op);
  if (comm == nullptr || comm->nranks == 1) return pgolf::emu::copy(send, recv, count, type, comm);
#if defined(PGOLF_EMU_WITH_MPI)
  const auto all = pgolf::emu::gather_all(send, count * pgolf::emu::element_size(type), comm);
  pgolf::emu::reduce(all.data(), count, comm->nranks, type, op, recv);
#endif
  return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t) {
  pgolf::emu::DeviceAccess device_memory_open;
  pgolf::emu::check_op(op);
  if (comm == nullptr || comm->nranks == 1) return pgolf::emu::copy(send, recv, recvcount, type, comm);
#if defined(PGOLF_EMU_WITH_MPI)
  // Reduce the whole buffer (nranks * recvcount) in rank order, keep this rank's block.
  const std::size_t elem = pgolf::emu::element_size(type), total = recvcount * static_cast<std::size_t>(comm->nranks);
  const auto all = pgolf::emu::gather_all(send, total * elem, comm);
  std::vector<unsigned char> reduced(total * elem);
  pgolf::emu::reduce(all.data(), total, comm->nranks, type, op, reduced.data());
  std::memcpy(recv, reduced.data() + static_cast<std::size_t>(comm->rank) * recvcount * elem, recvcount * elem);
#endif
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t) {
  pgolf::emu::DeviceAccess device_memory_open;
  if (comm == nullptr || comm->nranks == 1) return pgolf::emu::copy(send, recv, sendcount, type, comm);
#if defined(PGOLF_EMU_WITH_MPI)
  const auto all = pgolf::emu::gather_all(send, sendcount * pgolf::emu::element_size(type), comm);
  std::memcpy(recv, all.data(), all.size());
#endif
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t) {
  pgolf::emu::DeviceAccess device_memory_open;
  if (comm == nullptr || root < 0 || root >= comm->nranks) return ncclInvalidArgument;
  if (comm->nranks == 1) return pgolf::emu::copy(send, recv, count, type, comm);
#if defined(PGOLF_EMU_WITH_MPI)
  const std::size_t bytes = count * pgolf::emu::element_size(type);
  if (bytes > static_cast<std::size_t>(INT32_MAX)) throw pgolf::emu::Error("NCCL double: a broadcast over 2 GiB");
  if (comm->rank == root && send != recv) std::memmove(recv, send, bytes);
  MPI_Bcast(recv, static_cast<int>(bytes), MPI_BYTE, root, comm->mpi);
#endif
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }
