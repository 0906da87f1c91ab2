#pragma once
// GCC keeps a product that is used on one side of a select (x > 0 ? x : a·x) behind a branch,
// since under the default -ftrapping-math it might trap, and such loops then stay scalar ("control
// flow in loop"); without trapping math they vectorise. The values are the same: nothing in pconv
// reads the floating-point flags. Clang vectorises these loops as they are.
#if defined(__GNUC__) && !defined(__clang__)
#define PCONV_NO_TRAPPING_MATH [[gnu::optimize("no-trapping-math")]]
#else
#define PCONV_NO_TRAPPING_MATH
#endif
