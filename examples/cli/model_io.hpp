#pragma once
// Model files of the `fort` command: fort::save_model / load_model plus the metadata the command
// needs to rebuild the model (architecture, standardisation), and CNF teacher files.
#include <fort/fort.hpp>

#include <string>

#include "architecture.hpp"

namespace fort_cli {

/// What a model file says about the model before its parameters are read.
struct LoadedModel {
  Architecture arch;
  fort::Standardization stdz;
  Metadata metadata;
};

inline fort::Standardization standardization_from(const Metadata& m, const std::string& path, fort::Index dim) {
  auto get = [&](const std::string& key) -> const std::string& {
    const auto it = m.find(key);
    if (it == m.end()) throw fort::Error("fort", "'" + path + "' has no metadata key '" + key + "'");
    return it->second;
  };
  fort::Standardization s(fort::Standardization::decode(get("fort.shift"), "fort.shift"),
                          fort::Standardization::decode(get("fort.scale"), "fort.scale"));
  if (s.dim() != dim)
    throw fort::Error("fort", "'" + path + "': standardisation has " + std::to_string(s.dim()) + " entries, expected " +
                                  std::to_string(dim));
  return s;
}

inline LoadedModel read_model_description(const std::string& path) {
  LoadedModel m;
  m.metadata = fort::read_model_metadata(path);
  if (m.metadata.count("fort.kind") && m.metadata.at("fort.kind") == "cnf-teacher")
    throw fort::Error("fort", "'" + path + "' is a CNF teacher; evaluate it with `fort eval --teacher`");
  m.arch = Architecture::from_metadata(m.metadata, path);
  m.stdz = standardization_from(m.metadata, path, m.arch.dim);
  return m;
}

template <class Flow>
void save_flow(const std::string& path, const Flow& flow, const Metadata& meta) {
  fort::save_model(path, flow, meta);
}

template <class Flow>
void load_flow(const std::string& path, Flow& flow) {
  fort::load_model(path, flow);
}

/// A velocity network with its parameters: the unit a teacher file holds.
template <class S>
struct TeacherModel {
  using Scalar = S;
  fort::VelocityMLP<S> field;
  fort::Vector<S> parameters;

  fort::Index dim() const { return field.dim(); }
  std::string signature() const { return field.signature(); }
  const fort::Vector<S>& params() const { return parameters; }
  void set_params(const fort::Vector<S>& p) { parameters = p; }
  fort::State state() const { return {}; }
  void set_state(std::span<const std::int64_t> s) {
    if (!s.empty()) throw fort::Error("TeacherModel", "a velocity network has no state");
  }
};

template <class S>
void save_teacher(const std::string& path, const fort::VelocityMLP<S>& field, const fort::Vector<S>& params,
                  const Metadata& meta) {
  // Stored in double whatever the training precision (exact for float parameters).
  fort::VelocityMLP<double> field64(field.dim(), fort::VelocityConfig{field.config()});
  TeacherModel<double> model{field64, params.template cast<double>()};
  fort::save_model(path, model, meta);
}

struct LoadedTeacher {
  fort::VelocityMLP<double> field;
  fort::Vector<double> params;
  fort::Standardization stdz;
};

inline LoadedTeacher load_teacher(const std::string& path) {
  const Metadata m = fort::read_model_metadata(path);
  if (!m.count("fort.kind") || m.at("fort.kind") != "cnf-teacher")
    throw fort::Error("fort", "'" + path + "' is not a CNF teacher file (written by `fort train --teacher-out`)");
  const fort::Index dim = std::stoll(m.at("fort.dim"));
  fort::VelocityConfig vc;
  vc.mlp = fort::MLPConfig{fort::Index(std::stoll(m.at("fort.teacher_width"))),
                           fort::Index(std::stoll(m.at("fort.teacher_depth"))), fort::Activation::silu, false};
  // Absent in files written before the option existed: those teachers used plain t.
  if (m.count("fort.teacher_time_frequencies")) vc.time_frequencies = std::stoll(m.at("fort.teacher_time_frequencies"));
  TeacherModel<double> model{fort::VelocityMLP<double>(dim, vc), fort::Vector<double>()};
  model.parameters.resize(model.field.num_params());
  fort::load_model(path, model);
  return {model.field, model.parameters, standardization_from(m, path, dim)};
}

}  // namespace fort_cli
