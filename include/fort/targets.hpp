#pragma once
/// \file
/// FORT targets: exact OT assignment (targets/assignment.hpp), entropic OT by log-domain
/// Sinkhorn for unequal sizes or weights (targets/sinkhorn.hpp) and CNF targets — a velocity
/// network with exact divergence (targets/velocity_field.hpp), its flow-matching training
/// (targets/flow_matching.hpp), batched RK4 / Dopri5 integrators (targets/ode.hpp) and the pair
/// generator and teacher log-likelihood (targets/cnf_targets.hpp).
#include "fort/targets/assignment.hpp"
#include "fort/targets/sinkhorn.hpp"
#include "fort/targets/velocity_field.hpp"
#include "fort/targets/ode.hpp"
#include "fort/targets/flow_matching.hpp"
#include "fort/targets/cnf_targets.hpp"
