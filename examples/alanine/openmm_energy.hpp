#pragma once
// Potential energies of alanine-dipeptide configurations from OpenMM's C++ API, for the System
// that examples/alanine/md.py serialised (amber99sbildn + amber96_obc, NoCutoff, constraints=None,
// so every X-H bond term counts). Reference platform (faster than CPU for 22 atoms).
#include <OpenMM.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fort/core/error.hpp>

namespace alanine {

inline void load_openmm_plugins() {
  static const bool once = [] {
    try {
      OpenMM::Platform::loadPluginsFromDirectory(OpenMM::Platform::getDefaultPluginsDirectory());
    } catch (const std::exception&) {  // the Reference platform is built in; plugins are optional
    }
    return true;
  }();
  (void)once;
}

inline std::unique_ptr<OpenMM::System> read_system(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw fort::Error("alanine", "cannot open OpenMM system file '" + path + "' (written by md.py)");
  std::unique_ptr<OpenMM::System> s;
  try {
    s.reset(OpenMM::XmlSerializer::deserialize<OpenMM::System>(in));
  } catch (const std::exception& e) {
    throw fort::Error("alanine", "'" + path + "' is not an OpenMM System XML: " + e.what());
  }
  if (s->getNumParticles() != 22)
    throw fort::Error("alanine", "'" + path + "' has " + std::to_string(s->getNumParticles()) +
                                     " particles; expected 22 (alanine dipeptide)");
  if (s->getNumConstraints() != 0)
    throw fort::Error("alanine", "'" + path + "' has constraints; expected the constraints=None energy system");
  return s;
}

/// One OpenMM Context for energy evaluation (use one per thread).
class EnergyEvaluator {
 public:
  explicit EnergyEvaluator(const OpenMM::System& system)
      : integrator_(0.001), context_(system, integrator_, OpenMM::Platform::getPlatformByName("Reference")),
        pos_(system.getNumParticles()) {}

  /// Potential energy (kJ/mol) of xyz [3 * 22] in nm; NaN if OpenMM throws.
  double operator()(const double* xyz) {
    for (std::size_t i = 0; i < pos_.size(); ++i) pos_[i] = OpenMM::Vec3(xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]);
    try {
      context_.setPositions(pos_);
      return context_.getState(OpenMM::State::Energy).getPotentialEnergy();
    } catch (const std::exception&) {
      return std::numeric_limits<double>::quiet_NaN();
    }
  }

 private:
  OpenMM::VerletIntegrator integrator_;
  OpenMM::Context context_;
  std::vector<OpenMM::Vec3> pos_;
};

}  // namespace alanine
