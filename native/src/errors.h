// Turns any C++ failure into a message and a stable error code for JavaScript, so that no
// exception from libtorch can reach N-API unhandled and abort the Node process.
#pragma once

#include <c10/util/Exception.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace pathotype {

struct NonFiniteLoss : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Failure {
  std::string code;
  std::string message;
};

// Runs fn; returns true on success, else fills failure.
inline bool Guard(const std::function<void()>& fn, Failure& failure) {
  try {
    fn();
    return true;
  } catch (const NonFiniteLoss& e) {
    failure = {"ERR_NONFINITE_LOSS", e.what()};
  } catch (const std::invalid_argument& e) {
    failure = {"ERR_ENGINE_INPUT", e.what()};
  } catch (const c10::Error& e) {
    failure = {"ERR_ENGINE", e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    failure = {"ERR_ENGINE_MEMORY", "out of memory: use smaller batches or a smaller network"};
  } catch (const std::exception& e) {
    failure = {"ERR_ENGINE", e.what()};
  } catch (...) {
    failure = {"ERR_ENGINE", "unknown native error"};
  }
  return false;
}

}  // namespace pathotype
