#include <doctest/doctest.h>

#include <sstream>

#include "core/ops.h"

using namespace pconv;

// docs/engine.md's API example, kept compiling and working (output goes to a string, not stdout).
TEST_CASE("readme: the tensor and autograd example runs") {
  std::ostringstream out;
  Generator gen(42);
  Tensor x = Tensor::randn({2, 3, 8, 8}, gen);                    // N×C×H×W, f32, CPU
  Tensor w = Tensor::randn({4, 3, 3, 3}, gen).set_requires_grad();
  Tensor b = Tensor::zeros({4}).set_requires_grad();
  Tensor y = leaky_relu(conv2d(x, w, b, /*stride=*/1, /*pad=*/1), 0.2);
  Tensor loss = mean(abs(y));
  loss.backward();                                                // fills w.grad(), b.grad()
  out << w.grad() << "\n";
  { NoGradGuard no_grad; Tensor z = conv2d(x, w, b, 1, 1); CHECK(!z.requires_grad()); }
  CHECK(w.grad().shape() == Shape{4, 3, 3, 3});
  CHECK(b.grad().shape() == Shape{4});
  CHECK(!out.str().empty());
}
