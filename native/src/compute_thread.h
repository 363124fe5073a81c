// One thread runs every engine job, in order. libtorch parallelises inside each operation with
// OpenMP, and OpenMP keeps one team of spinning threads per calling thread: calls spread over
// libuv's pool made several teams fight for the cores (training ran at 0.86x of a plain C++
// loop); one calling thread keeps one team (1.1x).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace pathotype {

class ComputeThread {
 public:
  // Process-wide and never destroyed: a job may still run while the process exits.
  static ComputeThread& Instance() {
    static ComputeThread* instance = new ComputeThread();
    return *instance;
  }

  void Submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

 private:
  ComputeThread() { std::thread([this] { Loop(); }).detach(); }

  void Loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace pathotype
