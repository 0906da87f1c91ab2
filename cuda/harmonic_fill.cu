// The harmonic fill on the GPU: the CPU's coarse-to-fine red–black solver
// (core/cpu/harmonic_fill.cpp) run on every (n, c) plane of the batch at once, so the fill no
// longer costs two host copies and a host solve per forward pass.
//
// It computes what the CPU computes, bit for bit: red–black relaxation is order-free within a
// colour (a pixel's four neighbours are all of the other colour), each plane stops after the
// same sweep as on the CPU (its largest change is reduced on the device after every sweep), the
// coarse levels sum their 2×2 blocks in the CPU's order, and the arithmetic is written with
// round-to-nearest intrinsics so the compiler cannot contract it into FMAs the CPU does not do.
//
// The pyramid: level 0 is the image, level l+1 averages level l's 2×2 blocks over their known
// pixels, down to 1×1. A coarse hole means four fine holes, so an image with holes at level l has
// holes at every finer level: the CPU's recursion relaxes exactly the levels with holes, from
// the coarsest up, each started from the level below it. Known pixels (and so holes) are per
// image, shared by its channels.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cuda/allocator.h"
#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline double div_rn(double a, double b) { return __ddiv_rn(a, b); }

struct Level {
  int h, w;
  size_t offset;  // of this level's first plane in the values and known arrays (in elements)
};

// known[n][i] = mask >= 0.5 (compared in f32, as the CPU does).
template <typename T>
__global__ void known_kernel(const T* mask, uint8_t* known, int64_t total) {
  PCONV_GRID_STRIDE(i, total) known[i] = float(mask[i]) >= 0.5f;
}

// Per plane: the range of its known values (lo, hi) and whether it has any. One block per plane.
template <typename T>
__global__ void range_kernel(const T* v, const uint8_t* known, int C, int plane_size, double* tol,
                             uint8_t* any_known, double tolerance) {
  const int p = blockIdx.x;
  const T* pv = v + size_t(p) * plane_size;
  const uint8_t* pk = known + size_t(p / C) * plane_size;
  T lo = 0, hi = 0;
  bool any = false;
  for (int i = threadIdx.x; i < plane_size; i += blockDim.x)
    if (pk[i]) {
      lo = any ? min(lo, pv[i]) : pv[i];
      hi = any ? max(hi, pv[i]) : pv[i];
      any = true;
    }
  __shared__ T s_lo[kThreads], s_hi[kThreads];
  __shared__ bool s_any[kThreads];
  s_lo[threadIdx.x] = lo, s_hi[threadIdx.x] = hi, s_any[threadIdx.x] = any;
  __syncthreads();
  for (int step = blockDim.x / 2; step > 0; step /= 2) {
    if (int(threadIdx.x) < step) {
      const int o = threadIdx.x + step;
      if (s_any[o]) {
        s_lo[threadIdx.x] = s_any[threadIdx.x] ? min(s_lo[threadIdx.x], s_lo[o]) : s_lo[o];
        s_hi[threadIdx.x] = s_any[threadIdx.x] ? max(s_hi[threadIdx.x], s_hi[o]) : s_hi[o];
        s_any[threadIdx.x] = true;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    any_known[p] = s_any[0];
    // As the CPU: the difference in T, then widened; a flat plane stops at once.
    tol[p] = tolerance * fmax(double(T(s_hi[0] - s_lo[0])), 1e-12);
  }
}

// A plane without a known pixel becomes 0.
template <typename T>
__global__ void zero_unknown_planes_kernel(T* v, const uint8_t* any_known, int plane_size, int64_t total) {
  PCONV_GRID_STRIDE(i, total) if (!any_known[i / plane_size]) v[i] = T(0);
}

// Coarse level of every plane: 2×2 block sums of the known values (row by row, as the CPU adds
// them) over their count; coarse known where the count is not 0. `planes` value planes, `images`
// known planes (known is per image).
template <typename T>
__global__ void coarsen_kernel(const T* fine, const uint8_t* fine_known, T* coarse, uint8_t* coarse_known,
                               int planes, int C, int h, int w, int hc, int wc) {
  const int64_t total = int64_t(planes) * hc * wc;
  PCONV_GRID_STRIDE(i, total) {
    const int xc = int(i % wc), yc = int((i / wc) % hc), p = int(i / (int64_t(wc) * hc));
    const T* fv = fine + size_t(p) * h * w;
    const uint8_t* fk = fine_known + size_t(p / C) * h * w;
    T sum = 0;
    int count = 0;
    for (int y = 2 * yc; y < min(2 * yc + 2, h); ++y)
      for (int x = 2 * xc; x < min(2 * xc + 2, w); ++x)
        if (fk[y * w + x]) sum = add_rn(sum, fv[y * w + x]), ++count;
    coarse[i] = count ? div_rn(sum, T(count)) : T(0);
    // Every channel computes the same known flag; the first writes it.
    if (p % C == 0) coarse_known[size_t(p / C) * hc * wc + yc * wc + xc] = count != 0;
  }
}

// has_holes[n] = 1 when image n has a hole at this level.
__global__ void holes_kernel(const uint8_t* known, int plane_size, int64_t total, int* has_holes) {
  PCONV_GRID_STRIDE(i, total) if (!known[i]) has_holes[i / plane_size] = 1;
}

// Starts a level's holes from the level below it (nearest), on planes with holes.
template <typename T>
__global__ void prolong_kernel(T* fine, const uint8_t* fine_known, const T* coarse, const int* has_holes,
                               int planes, int C, int h, int w, int hc, int wc) {
  const int64_t total = int64_t(planes) * h * w;
  PCONV_GRID_STRIDE(i, total) {
    const int x = int(i % w), y = int((i / w) % h), p = int(i / (int64_t(w) * h));
    if (!has_holes[p / C] || fine_known[size_t(p / C) * h * w + y * w + x]) continue;
    fine[i] = coarse[size_t(p) * hc * wc + (y / 2) * wc + x / 2];
  }
}

// Per level: every plane relaxing (has holes, has a known pixel, not converged) is active.
__global__ void start_level_kernel(const int* has_holes, const uint8_t* any_known, int planes, int C,
                                   uint8_t* active, int* sweeps, unsigned long long* largest) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= planes) return;
  active[p] = has_holes[p / C] && any_known[p];
  sweeps[p] = 0;
  largest[p] = 0;
}

// Over-relaxes hole pixel i of plane pv toward the mean of its in-image neighbours, summed in
// the CPU's order (left, right, up, down); returns |step| (0 for a 1×1 plane).
template <typename T>
__device__ double relax_pixel(T* pv, int i, int h, int w, T omega) {
  const int y = i / w, x = i - y * w;
  T sum = 0;
  int count = 0;
  if (x > 0) sum = add_rn(sum, pv[i - 1]), ++count;
  if (x + 1 < w) sum = add_rn(sum, pv[i + 1]), ++count;
  if (y > 0) sum = add_rn(sum, pv[i - w]), ++count;
  if (y + 1 < h) sum = add_rn(sum, pv[i + w]), ++count;
  if (count == 0) return 0;
  const T step = mul_rn(omega, sub_rn(div_rn(sum, T(count)), pv[i]));
  pv[i] = add_rn(pv[i], step);
  return double(dev_abs(step));
}

// One colour's half-sweep of over-relaxation over that colour's holes, listed per image
// (`holes` + start[n], len[n] entries: pixel indices in row-major order). grid.y: planes (in
// chunks); the largest |step| of each plane goes into `largest` as the bits of a non-negative
// double (ordered as integers).
template <typename T>
__global__ void relax_kernel(T* v, const int* holes, const int* start, const int* len, const uint8_t* active,
                             unsigned long long* largest, int plane0, int C, int h, int w, T omega) {
  const int p = plane0 + blockIdx.y;
  if (!active[p]) return;
  T* pv = v + size_t(p) * h * w;
  const int* list = holes + start[p / C];
  const int n = len[p / C];
  double big = 0;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x) {
    big = fmax(big, relax_pixel(pv, list[j], h, w, omega));
  }
  for (int off = 16; off > 0; off >>= 1) big = fmax(big, __shfl_down_sync(0xffffffffu, big, off));
  if ((threadIdx.x & 31) == 0 && big > 0) {
    unsigned long long bits;
    memcpy(&bits, &big, sizeof bits);
    atomicMax(largest + p, bits);
  }
}

// A whole level's relaxation in one launch, one block of kLevelThreads per plane: for levels
// whose hole lists are short, where queuing and checking each sweep from the host costs more
// than the sweep. The same arithmetic, order and stopping rule as relax_kernel + end_sweep_kernel;
// __syncthreads between the colours makes one colour's writes visible to the other's reads.
constexpr int kLevelThreads = 1024;

template <typename T>
__global__ void __launch_bounds__(kLevelThreads) relax_level_kernel(
    T* v, const int* holes, const int* start0, const int* len0, const int* start1, const int* len1,
    const uint8_t* active, const double* tol, int C, int h, int w, T omega, int max_sweeps) {
  const int p = blockIdx.x;
  if (!active[p]) return;
  T* pv = v + size_t(p) * h * w;
  const int image = p / C;
  __shared__ double warp_big[kLevelThreads / 32];
  __shared__ int stop;
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    double big = 0;
    for (int colour = 0; colour < 2; ++colour) {
      const int* list = holes + (colour ? start1 : start0)[image];
      const int n = (colour ? len1 : len0)[image];
      for (int j = threadIdx.x; j < n; j += blockDim.x) {
        big = fmax(big, relax_pixel(pv, list[j], h, w, omega));
      }
      __syncthreads();
    }
    for (int off = 16; off > 0; off >>= 1) big = fmax(big, __shfl_down_sync(0xffffffffu, big, off));
    if ((threadIdx.x & 31) == 0) warp_big[threadIdx.x / 32] = big;
    __syncthreads();
    if (threadIdx.x == 0) {
      double largest = 0;
      for (int k = 0; k < int(blockDim.x) / 32; ++k) largest = fmax(largest, warp_big[k]);
      stop = largest <= tol[p];
    }
    __syncthreads();
    if (stop) break;
  }
}

// After a whole sweep: count it, stop planes whose largest change is within tolerance or that
// reached max_sweeps, and count those still running.
__global__ void end_sweep_kernel(uint8_t* active, int* sweeps, unsigned long long* largest, const double* tol,
                                 int planes, int max_sweeps, int* running) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= planes || !active[p]) return;
  double big;
  const unsigned long long bits = largest[p];
  memcpy(&big, &bits, sizeof big);
  largest[p] = 0;
  if (++sweeps[p] >= max_sweeps || big <= tol[p])
    active[p] = 0;
  else
    atomicAdd(running, 1);
}

unsigned small_blocks(int n) { return unsigned((n + kThreads - 1) / kThreads); }

}  // namespace

void CudaBackend::harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out, const HarmonicFillParams& params) {
  if (image.dim() != 4 || mask.dim() != 4 || mask.size(1) != 1 || mask.size(0) != image.size(0) ||
      mask.size(2) != image.size(2) || mask.size(3) != image.size(3) || out.shape() != image.shape())
    throw Error("harmonic_fill: image " + shapes_of(image) + ", mask " + shapes_of(mask) + " and out " +
                shapes_of(out) + " must be N×C×H×W, N×1×H×W and the image's shape");
  const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
  if (image.numel() == 0) return;
  // The hole lists index every level of every image with ints: past that, the host's solver.
  if (N * H * W > (int64_t(1) << 30) || N * C > (int64_t(1) << 30))
    return Backend::harmonic_fill(image, mask, out, params);
  if (out.raw_data() != image.raw_data()) copy(image, out);
  const int planes = int(N * C), images = int(N), c = int(C);

  // The pyramid's levels, level 0 being `out` itself.
  std::vector<Level> levels{{int(H), int(W), 0}};
  size_t value_elems = 0, known_elems = size_t(N * H * W);
  while (levels.back().h > 1 || levels.back().w > 1) {
    const Level& f = levels.back();
    Level next{(f.h + 1) / 2, (f.w + 1) / 2, value_elems};
    value_elems += size_t(planes) * next.h * next.w;
    levels.push_back(next);
  }
  cuda_dispatch_float("harmonic_fill", image.dtype(), [&](auto tag) {
    using T = decltype(tag);
    CudaBuffer coarse_values(value_elems * sizeof(T));
    // Known flags of every level, per image: level 0 first, then the coarse levels in order.
    size_t known_total = known_elems;
    std::vector<size_t> known_offset{0};
    for (size_t l = 1; l < levels.size(); ++l) {
      known_offset.push_back(known_total);
      known_total += size_t(images) * levels[l].h * levels[l].w;
    }
    CudaBuffer known(known_total);
    CudaBuffer tol(planes * sizeof(double)), any_known(planes), active(planes);
    CudaBuffer sweeps(planes * sizeof(int)), largest(planes * sizeof(unsigned long long));
    CudaBuffer holes(levels.size() * images * sizeof(int)), running(sizeof(int));
    CUDA_CHECK(cudaMemsetAsync(holes.get(), 0, holes.bytes(), stream_));
    auto values = [&](size_t l) { return l == 0 ? out.data<T>() : coarse_values.as<T>() + levels[l].offset; };
    auto known_at = [&](size_t l) { return known.as<uint8_t>() + known_offset[l]; };
    auto holes_at = [&](size_t l) { return holes.as<int>() + l * images; };

    known_kernel<T><<<blocks_for(known_elems), kThreads, 0, stream_>>>(mask.data<T>(), known.as<uint8_t>(),
                                                                       int64_t(known_elems));
    range_kernel<T><<<planes, kThreads, 0, stream_>>>(out.data<T>(), known.as<uint8_t>(), c, int(H * W),
                                                      tol.as<double>(), any_known.as<uint8_t>(), params.tolerance);
    zero_unknown_planes_kernel<T><<<blocks_for(out.numel()), kThreads, 0, stream_>>>(
        out.data<T>(), any_known.as<uint8_t>(), int(H * W), out.numel());
    for (size_t l = 0; l < levels.size(); ++l) {
      const int64_t n = int64_t(images) * levels[l].h * levels[l].w;
      holes_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(known_at(l), levels[l].h * levels[l].w, n, holes_at(l));
      if (l + 1 < levels.size())
        coarsen_kernel<T><<<blocks_for(int64_t(planes) * levels[l + 1].h * levels[l + 1].w), kThreads, 0, stream_>>>(
            values(l), known_at(l), values(l + 1), known_at(l + 1), planes, c, levels[l].h, levels[l].w,
            levels[l + 1].h, levels[l + 1].w);
    }
    CUDA_CHECK_LAUNCH("harmonic_fill pyramid of " + shapes_of(image));

    std::vector<int> has_holes(levels.size() * images);
    std::vector<uint8_t> host_known(known_total);
    CUDA_CHECK(cudaMemcpyAsync(has_holes.data(), holes.get(), holes.bytes(), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaMemcpyAsync(host_known.data(), known.get(), known_total, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    // The holes of each level, image and colour, listed so that a half-sweep visits only the
    // pixels it changes (a third of the image or less, half of them per colour) instead of all.
    std::vector<int> hole_list, list_start(levels.size() * images * 2), list_len(levels.size() * images * 2);
    for (size_t l = 0; l < levels.size(); ++l)
      for (int colour = 0; colour < 2; ++colour)
        for (int i = 0; i < images; ++i) {
          const size_t slot = (l * 2 + colour) * images + i;
          list_start[slot] = int(hole_list.size());
          if (!has_holes[l * images + i]) continue;
          const int h = levels[l].h, w = levels[l].w;
          const uint8_t* k = host_known.data() + known_offset[l] + size_t(i) * h * w;
          for (int y = 0; y < h; ++y)
            for (int x = (y + colour) & 1; x < w; x += 2)
              if (!k[y * w + x]) hole_list.push_back(y * w + x);
          list_len[slot] = int(hole_list.size()) - list_start[slot];
        }
    CudaBuffer lists(std::max<size_t>(hole_list.size(), 1) * sizeof(int));
    CudaBuffer starts(list_start.size() * sizeof(int)), lens(list_len.size() * sizeof(int));
    CUDA_CHECK(cudaMemcpyAsync(lists.get(), hole_list.data(), hole_list.size() * sizeof(int), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaMemcpyAsync(starts.get(), list_start.data(), starts.bytes(), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaMemcpyAsync(lens.get(), list_len.data(), lens.bytes(), cudaMemcpyHostToDevice, stream_));
    const T omega = T(params.omega);
    constexpr int kSweepsPerCheck = 8;  // sweeps queued between reads of the running count
    // Levels whose longest colour list is at most this run in one launch (relax_level_kernel):
    // 16 entries per thread of one block, so a level of 256² or smaller in a 512² photo.
    constexpr int kSmallLevel = 16 * kLevelThreads;
    for (size_t l = levels.size(); l-- > 0;) {
      bool level_has_holes = false;
      for (int i = 0; i < images; ++i) level_has_holes |= has_holes[l * images + i] != 0;
      if (!level_has_holes) continue;
      const int h = levels[l].h, w = levels[l].w;
      if (l + 1 < levels.size())
        prolong_kernel<T><<<blocks_for(int64_t(planes) * h * w), kThreads, 0, stream_>>>(
            values(l), known_at(l), values(l + 1), holes_at(l), planes, c, h, w, levels[l + 1].h, levels[l + 1].w);
      start_level_kernel<<<small_blocks(planes), kThreads, 0, stream_>>>(
          holes_at(l), any_known.as<uint8_t>(), planes, c, active.as<uint8_t>(), sweeps.as<int>(),
          largest.as<unsigned long long>());
      unsigned bx[2];
      for (int colour = 0; colour < 2; ++colour) {
        const size_t slot = (l * 2 + colour) * images;
        const int longest = *std::max_element(list_len.begin() + slot, list_len.begin() + slot + images);
        bx[colour] = unsigned(std::clamp((longest + kThreads - 1) / kThreads, 1, 1024));
      }
      int longest_list = 0;
      for (int colour = 0; colour < 2; ++colour) {
        const size_t slot = (l * 2 + colour) * images;
        longest_list = std::max(longest_list, *std::max_element(list_len.begin() + slot, list_len.begin() + slot + images));
      }
      if (longest_list <= kSmallLevel) {
        const size_t s0 = (l * 2) * images, s1 = (l * 2 + 1) * images;
        relax_level_kernel<T><<<planes, kLevelThreads, 0, stream_>>>(
            values(l), lists.as<int>(), starts.as<int>() + s0, lens.as<int>() + s0, starts.as<int>() + s1,
            lens.as<int>() + s1, active.as<uint8_t>(), tol.as<double>(), c, h, w, omega, params.max_sweeps);
        CUDA_CHECK_LAUNCH("harmonic_fill level " + std::to_string(h) + "x" + std::to_string(w));
        continue;
      }
      // Sweeps are queued kSweepsPerCheck at a time; `running` holds the planes still relaxing
      // after the last of them, read once per batch (the only host waits of the solve).
      for (int queued = 0; queued < params.max_sweeps;) {
        const int batch = std::min(kSweepsPerCheck, params.max_sweeps - queued);
        for (int s = 0; s < batch; ++s) {
          for (int colour = 0; colour < 2; ++colour) {
            const size_t slot = (l * 2 + colour) * images;
            for (int p0 = 0; p0 < planes; p0 += 65535)
              relax_kernel<T><<<dim3(bx[colour], unsigned(std::min(planes - p0, 65535))), kThreads, 0, stream_>>>(
                  values(l), lists.as<int>(), starts.as<int>() + slot, lens.as<int>() + slot, active.as<uint8_t>(),
                  largest.as<unsigned long long>(), p0, c, h, w, omega);
          }
          CUDA_CHECK(cudaMemsetAsync(running.get(), 0, sizeof(int), stream_));
          end_sweep_kernel<<<small_blocks(planes), kThreads, 0, stream_>>>(
              active.as<uint8_t>(), sweeps.as<int>(), largest.as<unsigned long long>(), tol.as<double>(), planes,
              params.max_sweeps, running.as<int>());
        }
        queued += batch;
        CUDA_CHECK_LAUNCH("harmonic_fill sweeps at " + std::to_string(h) + "x" + std::to_string(w));
        int still = 0;
        CUDA_CHECK(cudaMemcpyAsync(&still, running.get(), sizeof(int), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        if (still == 0) break;
      }
    }
    CUDA_CHECK_LAUNCH("harmonic_fill relaxation of " + shapes_of(image));
  });
}

}  // namespace pconv
