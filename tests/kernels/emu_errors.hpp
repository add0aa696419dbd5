#pragma once
// Shared by the emulator's tests: the message of the pgolf::emu::Error a call throws, or ""
// when it throws none, so a test can assert both that the emulator caught a bug and what it
// said about it.
#include <string>

#include "emu/runtime.hpp"

namespace pgolf::emu {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace pgolf::emu
