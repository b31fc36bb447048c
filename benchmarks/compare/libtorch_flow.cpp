// LibTorch peer of the comparison harness (benchmarks/compare/run.sh builds it against the C++
// library inside the PyTorch wheel). The hand-built affine coupling flow of compare.py, written
// with the LibTorch C++ API: same architecture, same parametrisation as fort.
//
//   libtorch_flow check DIR              load fort's exported weights, compare outputs, print JSON
//   libtorch_flow train B T REPS         FORT step (MSE + backward + AdamW) at batch B, T threads
//   libtorch_flow sample B T REPS        sample_and_log_prob(B) under inference mode
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int64_t kDim = 66, kBlocks = 8, kWidth = 256;

// Minimal readers for the files fort_compare export writes (fixed, known layout).
std::vector<int64_t> int_list(const std::string& js, std::size_t& pos, const std::string& key) {
  pos = js.find("\"" + key + "\":[", pos);
  pos = js.find('[', pos) + 1;
  const std::size_t end = js.find(']', pos);
  std::vector<int64_t> v;
  std::stringstream ss(js.substr(pos, end - pos));
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
  pos = end;
  return v;
}

int64_t int_value(const std::string& js, std::size_t& pos, const std::string& key) {
  pos = js.find("\"" + key + "\":", pos) + key.size() + 3;
  return std::stoll(js.substr(pos, js.find_first_of(",}", pos) - pos));
}

torch::Tensor read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8];
  in.read(magic, 8);
  uint16_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 2);
  std::string header(hlen, ' ');
  in.read(header.data(), hlen);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": expected little-endian float32, C order");
  const auto l = header.find('('), r = header.find(')');
  std::vector<int64_t> shape;
  std::stringstream ss(header.substr(l + 1, r - l - 1));
  std::string item;
  while (std::getline(ss, item, ','))
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
  auto t = torch::empty(shape, torch::kFloat32);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), t.numel() * 4);
  return t;
}

struct CouplingImpl : torch::nn::Module {
  torch::Tensor pa, tr;
  torch::nn::Linear l0{nullptr}, l1{nullptr}, l2{nullptr};
  CouplingImpl(std::vector<int64_t> passed, std::vector<int64_t> transformed) {
    pa = register_buffer("pa", torch::tensor(passed));
    tr = register_buffer("tr", torch::tensor(transformed));
    l0 = register_module("l0", torch::nn::Linear(int64_t(passed.size()), kWidth));
    l1 = register_module("l1", torch::nn::Linear(kWidth, kWidth));
    l2 = register_module("l2", torch::nn::Linear(kWidth, 2 * int64_t(transformed.size())));
  }
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    auto h = l2(torch::relu(l1(torch::relu(l0(x.index_select(1, pa)))))).view({x.size(0), -1, 2});
    auto s = 3.0 * torch::tanh(h.select(2, 0) / 3.0);
    auto y = x.clone();
    y.index_copy_(1, tr, x.index_select(1, tr) * torch::exp(s) + h.select(2, 1));
    return {y, s.sum(1)};
  }
};
TORCH_MODULE(Coupling);

struct FlowImpl : torch::nn::Module {
  std::vector<Coupling> couplings;
  std::vector<torch::Tensor> perms;
  std::vector<int64_t> offsets, counts;
  explicit FlowImpl(const std::string& js) {
    std::size_t pos = 0;
    for (int64_t b = 0; b < kBlocks; ++b) {
      auto passed = int_list(js, pos, "passed");
      auto transformed = int_list(js, pos, "transformed");
      auto src = int_list(js, pos, "perm_src");
      offsets.push_back(int_value(js, pos, "offset"));
      counts.push_back(int_value(js, pos, "num_params"));
      couplings.push_back(register_module("c" + std::to_string(b), Coupling(passed, transformed)));
      perms.push_back(register_buffer("p" + std::to_string(b), torch::tensor(src)));
    }
  }
  std::pair<torch::Tensor, torch::Tensor> forward(torch::Tensor z) {
    auto ld = torch::zeros({z.size(0)});
    for (int64_t b = 0; b < kBlocks; ++b) {
      auto [y, l] = couplings[b]->forward(z);
      ld = ld + l;
      z = y.index_select(1, perms[b]);
    }
    return {z, ld};
  }
  void load(const torch::Tensor& flat) {
    torch::NoGradGuard ng;
    for (int64_t b = 0; b < kBlocks; ++b) {
      int64_t off = offsets[b];
      for (auto* lin : {&couplings[b]->l0, &couplings[b]->l1, &couplings[b]->l2}) {
        auto& w = (*lin)->weight;
        auto& bias = (*lin)->bias;
        w.copy_(flat.narrow(0, off, w.numel()).view(w.sizes()));
        off += w.numel();
        bias.copy_(flat.narrow(0, off, bias.numel()));
        off += bias.numel();
      }
      if (off != offsets[b] + counts[b]) throw std::runtime_error("fort parameter layout mismatch");
    }
  }
};
TORCH_MODULE(Flow);

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <class F>
void time_it(int reps, F&& f) {
  f();
  double t0 = now();
  f();
  const double one = std::max(now() - t0, 1e-7);
  const long calls = std::max(1L, long(0.2 / one));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    t0 = now();
    for (long c = 0; c < calls; ++c) f();
    times.push_back((now() - t0) / double(calls));
  }
  std::sort(times.begin(), times.end());
  std::printf("{\"median_s\":%.9g,\"calls\":%ld}\n", times[times.size() / 2], calls);
}

// The structure needs some exported spec; timings use a synthetic alternating half mask and
// random permutations (same shapes as fort's flow).
std::string synthetic_spec() {
  std::string js = "{\"blocks\":[";
  torch::manual_seed(0);
  for (int64_t b = 0; b < kBlocks; ++b) {
    std::string pa, tr, src;
    for (int64_t j = 0; j < kDim; ++j) {
      const bool first = j < kDim / 2;
      (first != (b % 2 == 1) ? pa : tr) += (((first != (b % 2 == 1)) ? pa : tr).empty() ? "" : ",") + std::to_string(j);
    }
    auto perm = torch::randperm(kDim, torch::kLong);
    for (int64_t j = 0; j < kDim; ++j) src += (j ? "," : "") + std::to_string(perm[j].item<int64_t>());
    js += std::string(b ? "," : "") + "{\"passed\":[" + pa + "],\"transformed\":[" + tr + "],\"perm_src\":[" + src +
          "],\"offset\":0,\"num_params\":0}";
  }
  return js + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> a(argv + 1, argv + argc);
  if (a.empty()) return 2;
  if (a[0] == "check") {
    const std::string dir = a.at(1);
    Flow flow(slurp(dir + "/affine.json"));
    flow->load(read_npy_f32(dir + "/affine_params.npy").view({-1}));
    const auto z = read_npy_f32(dir + "/affine_z.npy");
    const auto x_ref = read_npy_f32(dir + "/affine_x.npy");
    const auto ld_ref = read_npy_f32(dir + "/affine_ld.npy").view({-1});
    torch::NoGradGuard ng;
    auto [x, ld] = flow->forward(z);
    std::printf("{\"max_abs_dx\":%.6g,\"max_abs_dlogdet\":%.6g}\n", (x - x_ref).abs().max().item<double>(),
                (ld - ld_ref).abs().max().item<double>());
    return 0;
  }
  const int64_t batch = std::stoll(a.at(1));
  torch::set_num_threads(std::stoi(a.at(2)));
  const int reps = std::stoi(a.at(3));
  Flow flow(synthetic_spec());
  {
    torch::NoGradGuard ng;
    for (auto& p : flow->parameters()) p.add_(0.05 * torch::randn(p.sizes()));
  }
  if (a[0] == "train") {
    torch::optim::AdamW opt(flow->parameters(), torch::optim::AdamWOptions(5e-4).weight_decay(0.01));
    const auto x0 = torch::randn({batch, kDim}), x1 = torch::randn({batch, kDim});
    time_it(reps, [&] {
      opt.zero_grad();
      auto loss = (flow->forward(x0).first - x1).square().sum(1).mean();
      loss.backward();
      opt.step();
    });
  } else if (a[0] == "sample") {
    const double c = -0.5 * double(kDim) * std::log(2 * M_PI);
    time_it(reps, [&] {
      torch::InferenceMode im;
      auto z = torch::randn({batch, kDim});
      auto [x, ld] = flow->forward(z);
      auto lp = -0.5 * z.square().sum(1) + c - ld;
      if (lp.size(0) != batch) std::abort();
    });
  } else {
    return 2;
  }
  return 0;
}
