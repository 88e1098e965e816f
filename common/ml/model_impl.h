/*
 * model_impl.h - private to the model module: the ops tables of the model
 * kinds, which model.c lists in its table of kinds. Other modules reach a kind
 * through gdml_model_find() and never name these directly.
 */
#ifndef GDML_MODEL_IMPL_H
#define GDML_MODEL_IMPL_H

#include "model.h"

/* Softmax regression (softmax.c). */
extern const gdml_model_ops gdml_softmax_ops;

#endif
