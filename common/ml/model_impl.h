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

/* The multilayer perceptron (mlp.c). */
extern const gdml_model_ops gdml_mlp_ops;

/* Sparse binary logistic regression (sparselr.c). */
extern const gdml_model_ops gdml_sparselr_ops;

/*
 * The softmax cross-entropy of logits z (n rows of classes) against labels
 * y, as a mean over the rows; if grad, z is overwritten with its gradient
 * w.r.t. z. Shared by every kind that ends in a softmax (softmax.c).
 */
double gdml_softmax_xent(float *z, const uint8_t *y, size_t n, size_t classes, bool grad);

/* pred[i] = the largest of row i of z (n rows of classes). */
void gdml_argmax_rows(const float *z, size_t n, size_t classes, uint8_t *pred);

#endif
