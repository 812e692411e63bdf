// Common Eigen types. Every matrix that crosses the Python boundary is
// row-major float64, so NumPy arrays map onto it without copies.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace mlu {

using Index = Eigen::Index;
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXd;
using IVec = Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>;
using MatRef = Eigen::Ref<const RowMat>;
using VecRef = Eigen::Ref<const Vec>;
using LabelRef = Eigen::Ref<const IVec>;
using CMapRM = Eigen::Map<const RowMat>;
using MapRM = Eigen::Map<RowMat>;
using CMapVec = Eigen::Map<const Vec>;
using MapVec = Eigen::Map<Vec>;

}  // namespace mlu
