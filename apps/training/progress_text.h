#pragma once
// Numbers and durations as the training progress lines and messages print them.
#include <string>

namespace pconv::training {

// One number through a printf format ("%.4f").
std::string format(const char* fmt, double v);
// "1h05m", "3m07s"; "?" for a negative or non-finite time (an ETA not known yet).
std::string duration(double seconds);

}  // namespace pconv::training
