#pragma once
/// \file
/// fort composition: Sequential, Repeat, base distributions and the Flow object.
#include "fort/flows/chain.hpp"
#include "fort/flows/sequential.hpp"
#include "fort/flows/repeat.hpp"
#include "fort/flows/distributions.hpp"
#include "fort/flows/flow.hpp"
