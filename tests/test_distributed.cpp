// Data parallelism without MPI: ranks as threads (tests/thread_ranks.h) drive the synchronised
// BatchNorm, the data shares, the collective helpers and the whole trainer, in every build.
// tests/test_mpi.cpp runs the real thing under mpirun when pconv is built with MPI.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>

#include "apps/cli/cli.h"
#include "apps/training/trainer.h"
#include "core/data/dataset.h"
#include "core/distributed/communicator.h"
#include "core/ops.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "tests/thread_ranks.h"

using namespace pconv;
using testing::ThreadRanks;

namespace {

Tensor leaf_copy(const Tensor& t) {
  return Tensor::from_vector(t.to_double_vector(), t.shape()).to(t.dtype()).set_requires_grad();
}

// The message of a rank's exception ("" when it had none).
std::string message_of(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "unknown";
}

bool is_collective(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const CollectiveError&) {
    return true;
  } catch (...) {
  }
  return false;
}

// The tiny model of the trainer tests, with a batch of 4 (2 per rank on two ranks).
TrainOptions tiny(const std::string& out, int64_t steps) {
  TrainOptions o;
  o.data_dir = testing::source_path("data/train");
  o.out_dir = out;
  o.vgg = "none";
  o.size = 32, o.batch = 4, o.levels = 3, o.width = 8;
  o.seed = 11;
  o.steps = steps;
  o.save_every = 100, o.keep = 10, o.val_every = 100, o.sample_every = 100, o.val_count = 2, o.log_every = 1;
  o.workers = 1, o.cache_gib = 0.1;
  o.quiet = true;
  return o;
}

std::map<std::string, std::vector<double>> values(const std::map<std::string, Tensor>& state) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, t] : state) out[name] = t.to_double_vector();
  return out;
}

// Largest |a − b| over every tensor of two states with the same names and shapes.
double max_abs_diff(const std::map<std::string, std::vector<double>>& a,
                    const std::map<std::string, std::vector<double>>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (const auto& entry : a) {
    const std::string& name = entry.first;
    const std::vector<double>& v = entry.second;
    INFO(name);
    REQUIRE(b.count(name) == 1);
    REQUIRE(b.at(name).size() == v.size());
    for (size_t i = 0; i < v.size(); ++i) worst = std::max(worst, std::abs(v[i] - b.at(name)[i]));
  }
  return worst;
}

Tensor& parameter(Trainer& t, const std::string& name) {
  for (auto& [n, p] : t.model().named_parameters())
    if (n == name) return *p;
  throw Error("no parameter " + name);
}

}  // namespace

TEST_CASE("distributed: synchronised batch_norm on 2 ranks is batch_norm of the whole batch, both ways") {
  for (DType dt : {DType::F64, DType::F32}) {
    const std::string dtype = dtype_name(dt);
    CAPTURE(dtype);
    const double tol = dt == DType::F64 ? 1e-12 : 3e-6;
    Generator gen(21);
    const Shape whole{4, 3, 5, 6};
    // A mean far from zero and unequal halves: the combination must not lose the between-rank part.
    Tensor x = Tensor::randn(whole, gen, dt, Device::CPU, 3.0, 2.0);
    x = concat({slice(x, 0, 0, 2), add(slice(x, 0, 2, 4), 1.5)}, 0);
    const Tensor gamma = Tensor::rand({3}, gen, dt, Device::CPU, 0.5, 1.5);
    const Tensor beta = Tensor::rand({3}, gen, dt, Device::CPU, -1, 1);
    const Tensor g = Tensor::randn(whole, gen, dt);  // upstream gradient: loss = Σ y ⊙ g

    // One process, the whole batch.
    Tensor xw = leaf_copy(x), gw = leaf_copy(gamma), bw = leaf_copy(beta);
    Tensor rm = Tensor::zeros({3}, dt), rv = Tensor::ones({3}, dt);
    const Tensor y = batch_norm(xw, gw, bw, rm, rv, true, true, 0.1, 1e-5);
    sum(mul(y, g)).backward();

    // Two ranks, two samples each.
    struct Out {
      Tensor y, gx, ggamma, gbeta, rm, rv, y_alone;
    };
    std::vector<Out> out(2);
    ThreadRanks ranks(2);
    const auto errors = ranks.run([&](Communicator& c) {
      const int64_t r = c.rank();
      Tensor xr = leaf_copy(slice(x, 0, 2 * r, 2 * r + 2)), gr = leaf_copy(gamma), br = leaf_copy(beta);
      Tensor m = Tensor::zeros({3}, dt), v = Tensor::ones({3}, dt);
      Out& o = out[size_t(r)];
      o.y = batch_norm(xr, gr, br, m, v, true, true, 0.1, 1e-5, &c);
      sum(mul(o.y, slice(g, 0, 2 * r, 2 * r + 2))).backward();
      o.gx = xr.grad(), o.ggamma = gr.grad(), o.gbeta = br.grad(), o.rm = m, o.rv = v;
      Tensor m2 = Tensor::zeros({3}, dt), v2 = Tensor::ones({3}, dt);
      o.y_alone = batch_norm(slice(x, 0, 2 * r, 2 * r + 2), gamma, beta, m2, v2, true, true);  // not synchronised
    });
    for (const auto& e : errors) REQUIRE(message_of(e) == "");

    CHECK(testing::max_rel_diff(concat({out[0].y, out[1].y}, 0), y) < tol);
    // Each rank's input gradient is its slice of the whole batch's.
    CHECK(testing::max_rel_diff(concat({out[0].gx, out[1].gx}, 0), xw.grad()) < tol);
    // γ and β gradients are per-rank sums: the whole batch's is their sum.
    CHECK(testing::max_rel_diff(add(out[0].ggamma, out[1].ggamma), gw.grad()) < tol);
    CHECK(testing::max_rel_diff(add(out[0].gbeta, out[1].gbeta), bw.grad()) < tol);
    for (const Out& o : out) {
      CHECK(testing::max_rel_diff(o.rm, rm) < tol);
      CHECK(testing::max_rel_diff(o.rv, rv) < tol);  // unbiased with the whole count n = 4·5·6
    }
    // Per-rank statistics would give other outputs: the comparison above can fail.
    CHECK(testing::max_rel_diff(out[0].y_alone, slice(y, 0, 0, 2)) > 0.05);
  }
}

TEST_CASE("distributed: agree, any_rank and the state check say the same on every rank") {
  ThreadRanks ranks(3);
  std::vector<std::string> messages(3);
  std::vector<int> any(3), quiet_any(3);
  std::vector<std::vector<int>> differing(3);
  const auto errors = ranks.run([&](Communicator& c) {
    const int r = c.rank();
    agree_on(c, [] {});  // nobody fails: nothing happens
    try {
      agree_on(c, [&] {
        if (r >= 1) throw Error("disk " + std::to_string(r) + " is full");
      });
    } catch (const CollectiveError& e) {
      messages[size_t(r)] = e.what();
      CHECK(e.rank == r);
    }
    any[size_t(r)] = any_rank(c, r == 2);
    quiet_any[size_t(r)] = any_rank(c, false);
    differing[size_t(r)] = ranks_differing_from_root(c, r == 1 ? 99 : 7);
  });
  for (int r = 0; r < 3; ++r) {
    CHECK(message_of(errors[size_t(r)]) == "");
    CHECK(messages[size_t(r)] == "rank 1: disk 1 is full");  // the lowest failing rank speaks for all
    CHECK(any[size_t(r)] == 1);
    CHECK(quiet_any[size_t(r)] == 0);
    CHECK(differing[size_t(r)] == std::vector<int>{1});
  }
  // One process: the original exception, type and all.
  CHECK_THROWS_AS(agree_on(single_process(), [] { throw DivergenceError("x", 0); }), DivergenceError);
  CHECK(hash_bytes("abc", 3, 1) != hash_bytes("abd", 3, 1));
  CHECK(hash_bytes("abc", 3, 1) == hash_bytes("abc", 3, 1));
}

TEST_CASE("distributed: two shares of every batch are the batch of one stream") {
  DatasetOptions d;
  d.image_dir = testing::source_path("data/train");
  d.size = 32, d.batch = 4, d.seed = 5;
  TrainingData whole(d);
  d.shards = 2;
  d.shard = 0;
  TrainingData first(d);
  d.shard = 1;
  TrainingData second(d);
  for (int step = 0; step < 3; ++step) {  // 12 samples: past the end of the 6-photo epoch
    const Batch w = whole.next(), a = first.next(), b = second.next();
    CHECK(a.images.shape() == Shape{2, 3, 32, 32});
    CHECK(concat({a.images, b.images}, 0).to_double_vector() == w.images.to_double_vector());
    CHECK(concat({a.masks, b.masks}, 0).to_double_vector() == w.masks.to_double_vector());
    CHECK(a.next == w.next);
    CHECK(b.next == w.next);
  }
  d.batch = 3;
  CHECK_THROWS_WITH_AS(TrainingData(d, {}), doctest::Contains("multiple of the shares"), Error);
}

TEST_CASE("distributed: 2 ranks train as 1 process with the same batch (5 steps, f32 rounding)") {
  const std::string one = testing::scratch_dir("dist-one"), two = testing::scratch_dir("dist-two");
  const std::string half = testing::scratch_dir("dist-half");
  Trainer single(tiny(one, 5));
  single.run();
  // What a rank alone would learn from its share: the size of a real mistake (wrong shares,
  // per-rank statistics, gradients not averaged).
  TrainOptions h = tiny(half, 5);
  h.batch = 2;
  Trainer alone(h);
  alone.run();
  const double mistake = max_abs_diff(values(alone.model().state_dict()), values(single.model().state_dict()));
  std::vector<std::map<std::string, std::vector<double>>> model(2), adam(2);
  std::vector<std::vector<StepLosses>> history(2);
  ThreadRanks ranks(2);
  const auto errors = ranks.run([&](Communicator& c) {
    Trainer t(tiny(two, 5), c);
    t.run();
    model[size_t(c.rank())] = values(t.model().state_dict());
    adam[size_t(c.rank())] = values(t.optimizer().state_dict());
    history[size_t(c.rank())] = t.history();
  });
  for (const auto& e : errors) REQUIRE(message_of(e) == "");
  // The ranks hold the same bits; against one process, sums taken in another order.
  CHECK(max_abs_diff(model[0], model[1]) == 0);
  CHECK(max_abs_diff(adam[0], adam[1]) == 0);
  const double weights = max_abs_diff(model[0], values(single.model().state_dict()));
  const double moments = max_abs_diff(adam[0], values(single.optimizer().state_dict()));
  MESSAGE("2 thread ranks vs 1 process after 5 steps: max |Δ| weights and BN statistics " << weights
          << ", Adam moments " << moments << "; half the batch in 1 process: " << mistake);
  // The sums (BatchNorm statistics, weight gradients) are taken in another order: f32
  // rounding, which Adam's m/√v amplifies for gradients near 0, to at most a few % of one step
  // (lr = 2e-4). The bound is 10 % of a step; a real mistake is several steps.
  CHECK(weights < 2e-5);
  CHECK(moments < 1e-6);
  CHECK(mistake > 1e-4);
  REQUIRE(history[0].size() == 5);
  for (size_t i = 0; i < 5; ++i) CHECK(history[0][i].total == doctest::Approx(single.history()[i].total).epsilon(1e-5));
  // Only rank 0 wrote, once: its checkpoint is the one of the run.
  CHECK(list_checkpoints(two).size() == 1);
}

TEST_CASE("distributed: a stop request on one rank stops every rank at the same step, saved once") {
  const std::string out = testing::scratch_dir("dist-stop");
  std::vector<int64_t> reached(2);
  ThreadRanks ranks(2);
  const auto errors = ranks.run([&](Communicator& c) {
    std::atomic<bool> stop{false};
    Trainer t(tiny(out, 50), c);
    if (c.rank() == 1)  // as a SIGTERM that reached rank 1 only
      t.after_step = [&](Trainer& tr) {
        if (tr.step() == 3) stop = true;
      };
    reached[size_t(c.rank())] = t.run(&stop);
  });
  for (const auto& e : errors) REQUIRE(message_of(e) == "");
  CHECK(reached == std::vector<int64_t>{3, 3});
  const auto saved = list_checkpoints(out);
  REQUIRE(saved.size() == 1);
  CHECK(std::filesystem::path(saved[0]).filename() == "step-00000003.safetensors");
}

TEST_CASE("distributed: ranks that drift apart stop at the next checkpoint without saving") {
  const std::string out = testing::scratch_dir("dist-drift");
  ThreadRanks ranks(2);
  const auto errors = ranks.run([&](Communicator& c) {
    TrainOptions o = tiny(out, 6);
    o.save_every = 2;
    Trainer t(o, c);
    if (c.rank() == 1)
      t.after_step = [](Trainer& tr) {
        if (tr.step() == 3) parameter(tr, "pconv2.weight").set({0, 0, 0, 0}, 0.5);
      };
    t.run();
  });
  for (const auto& e : errors) {
    INFO(message_of(e));
    CHECK(is_collective(e));
    CHECK(message_of(e).find("rank 1 of 2 holds another state than rank 0 at step 4") != std::string::npos);
    CHECK(message_of(e).find("step-00000002.safetensors") != std::string::npos);
  }
  const auto saved = list_checkpoints(out);
  REQUIRE(saved.size() == 1);  // step 2 only
  CHECK(std::filesystem::path(saved[0]).filename() == "step-00000002.safetensors");
}

TEST_CASE("distributed: a NaN on one rank stops every rank at that step, the step and term named") {
  const std::string out = testing::scratch_dir("dist-nan");
  std::vector<int64_t> reached(2);
  ThreadRanks ranks(2);
  const auto errors = ranks.run([&](Communicator& c) {
    Trainer t(tiny(out, 8), c);
    if (c.rank() == 1)
      t.after_step = [](Trainer& tr) {
        if (tr.step() == 3) parameter(tr, "pconv6.bias").set({0}, std::numeric_limits<double>::quiet_NaN());
      };
    try {
      t.run();
    } catch (...) {
      reached[size_t(c.rank())] = t.step();
      throw;
    }
  });
  for (const auto& e : errors) {
    INFO(message_of(e));
    CHECK(is_collective(e));  // so rank 0 alone reports it
    CHECK(message_of(e).find("step 4: the valid loss is nan") != std::string::npos);
  }
  CHECK(reached == std::vector<int64_t>{3, 3});
  CHECK(list_checkpoints(out).empty());
}

TEST_CASE("distributed: set-up errors on any rank stop all ranks with one message") {
  const std::string root = testing::scratch_dir("dist-errors");
  auto run_two = [&](const std::function<TrainOptions(int)>& options) {
    ThreadRanks ranks(2);
    const auto errors = ranks.run([&](Communicator& c) { Trainer t(options(c.rank()), c); });
    std::vector<std::string> out;
    for (const auto& e : errors) {
      CHECK(is_collective(e));
      out.push_back(message_of(e));
    }
    CHECK(out[0] == out[1]);
    return out[0];
  };
  SUBCASE("a missing data folder on rank 1") {
    const std::string m = run_two([&](int r) {
      TrainOptions o = tiny(root + "/a", 2);
      if (r == 1) o.data_dir = root + "/nowhere";
      return o;
    });
    CHECK(m.rfind("rank 1: ", 0) == 0);
    CHECK(m.find("nowhere: not a folder") != std::string::npos);
  }
  SUBCASE("a batch that the ranks cannot share equally") {
    const std::string m = run_two([&](int) {
      TrainOptions o = tiny(root + "/b", 2);
      o.batch = 3;
      return o;
    });
    CHECK(m == "--batch 3 is not a multiple of the 2 ranks: every rank takes an equal share of each batch");
  }
  // Every option a checkpoint saves is compared, whichever way it is set.
  SUBCASE("ranks with different options of the loss or the model") {
    for (const auto& change : std::vector<std::function<void(TrainOptions&)>>{
             [](TrainOptions& o) { o.tv_weight = 0.2; }, [](TrainOptions& o) { o.fill = "harmonic"; },
             [](TrainOptions& o) { o.noise = 1; }, [](TrainOptions& o) { o.steps = 3; },
             [](TrainOptions& o) { o.val_dir = testing::source_path("data/val"); }}) {
      const std::string m = run_two([&](int r) {
        TrainOptions o = tiny(root + "/d", 2);
        if (r == 1) change(o);
        return o;
      });
      CHECK(m.find("rank 1 of 2 holds another state than rank 0 at the start") != std::string::npos);
    }
  }
  SUBCASE("ranks resuming from different checkpoints") {
    Trainer(tiny(root + "/c1", 2)).run();
    Trainer(tiny(root + "/c2", 3)).run();
    const std::string m = run_two([&](int r) {
      TrainOptions o = tiny(root + "/c", 5);
      o.resume = root + (r == 0 ? "/c1" : "/c2");
      return o;
    });
    CHECK(m.find("rank 1 of 2 holds another state than rank 0 at the start") != std::string::npos);
    CHECK(m.find("same --resume or --init checkpoint") != std::string::npos);
  }
}

TEST_CASE("distributed: an error on one rank of several ends every rank (cli::run_on_ranks)") {
  ThreadRanks ranks(2);
  const auto errors = ranks.run([&](Communicator& c) {
    cli::run_on_ranks("test", c, [&] {
      if (c.rank() == 1) throw Error("rank 1's disk is full");
      any_rank(c, false);  // rank 0 waits in a collective for rank 1
    });
  });
  // Rank 1 aborts; rank 0, woken from its collective by that, aborts too (under MPI, MPI_Abort
  // would have ended it).
  CHECK(message_of(errors[1]).find("rank 1 aborted every rank with code 2") != std::string::npos);
  CHECK(message_of(errors[0]).find("aborted every rank") != std::string::npos);
  // A CollectiveError passes through: every rank has it and exits normally.
  CHECK_THROWS_AS(cli::run_on_ranks("test", single_process(), [] { throw CollectiveError("x", 0); }), CollectiveError);
}
