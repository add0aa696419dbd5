// A host double of the NCCL subset pgolf uses, for the emulated build (declarations: the
// real <nccl.h>). This part is the in-process transport for a single rank, where every
// collective reduces over one contribution: sum, average, min, max and product are the
// identity and all-gather / reduce-scatter / broadcast are copies. A communicator of several
// ranks needs a transport between processes (the MPI one is still to come) and is refused
// loudly, as is any data type outside NCCL's list.
#include <nccl.h>

#include <cstring>
#include <string>

#include "emu/runtime.hpp"

struct ncclComm {
  int nranks = 1;
  int rank = 0;
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
  if (nranks != 1)
    throw pgolf::emu::Error("NCCL double: a communicator of " + std::to_string(nranks) +
                            " ranks needs a transport between processes, which the emulator does not have yet "
                            "(run one rank)");
  *comm = new ncclComm{nranks, rank};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
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
  pgolf::emu::check_op(op);
  return pgolf::emu::copy(send, recv, count, type, comm);
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t) {
  pgolf::emu::check_op(op);
  return pgolf::emu::copy(send, recv, recvcount, type, comm);  // one rank keeps the whole buffer
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t) {
  return pgolf::emu::copy(send, recv, sendcount, type, comm);
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t) {
  if (comm != nullptr && root != 0) return ncclInvalidArgument;
  return pgolf::emu::copy(send, recv, count, type, comm);
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }
