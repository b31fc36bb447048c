#pragma once
/// \file
/// Training: the FORT / maximum-likelihood loss with its gradient (train/loss.hpp), Adam/AdamW,
/// gradient clipping, the warm-up + cosine schedule and the parameter EMA (train/optimizer.hpp),
/// and the threaded, deterministic training loop (train/trainer.hpp).

#include "fort/train/loss.hpp"
#include "fort/train/optimizer.hpp"
#include "fort/train/trainer.hpp"
