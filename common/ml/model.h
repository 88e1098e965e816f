/*
 * model.h - trainable models behind one table of operations.
 *
 * A layout names a model kind and its shape ("softmax 784 10", or with hidden
 * layers "mlp 784 256,128 10"); it travels in WELCOME messages and is stored
 * with every version so that parameters are never read without their shape.
 * Each kind is a gdml_model_ops table: softmax regression (softmax.c), the
 * multilayer perceptron (mlp.c), and sparse binary logistic regression
 * (sparselr.c), which trains on sparse rows and whose workers pull and push
 * only the parameters their batch touches.
 *
 * Softmax regression parameters: W as inputs x classes row-major, then the
 * bias b[classes]; logits = x W + b. MLP parameters: per layer, from the
 * inputs to the logits, W (fan_in x fan_out, row-major) then b[fan_out].
 * Sparse logistic regression ("sparselr 1000000 2"): w[inputs], then the
 * bias; P(y = 1 | x) = sigmoid(x . w + b).
 */
#ifndef GDML_MODEL_H
#define GDML_MODEL_H

#include "dataset.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest layout text, with its NUL. */
#define GDML_LAYOUT_TEXT_MAX 128

/* Hidden layers an MLP may have. */
#define GDML_MAX_HIDDEN 8

typedef struct gdml_layout {
    char kind[16];
    uint32_t inputs;
    uint32_t classes;
    uint32_t n_hidden;                /* 0 for kinds without hidden layers */
    uint32_t hidden[GDML_MAX_HIDDEN]; /* widths, from the inputs' side */
} gdml_layout;

typedef struct gdml_model_ops {
    const char *kind;
    bool hidden;          /* its layout names hidden layers (and must name at least one) */
    uint32_t max_classes; /* the most classes its layout may name; 0: the layout's bound */
    /*
     * It trains on sparse rows through loss_grad_csr and predict_csr (and has
     * no loss_grad or predict); a batch touches only the parameters that
     * gdml_model_keys names.
     */
    bool sparse;
    /* Number of float parameters. */
    size_t (*param_count)(const gdml_layout *l);
    /* Floats of scratch that loss_grad and predict need for a batch of n rows. */
    size_t (*scratch_count)(const gdml_layout *l, size_t n);
    /* Fills params with the initial model (deterministic from seed). */
    void (*init)(const gdml_layout *l, float *params, uint64_t seed);
    /*
     * Mean cross-entropy loss of rows x[0..n) (n x inputs) with labels y, and
     * if grad is not NULL, its gradient w.r.t. params (overwritten).
     */
    double (*loss_grad)(const gdml_layout *l, const float *params, const float *x, const uint8_t *y,
                        size_t n, float *grad, float *scratch);
    /* Writes the predicted class of each row into pred[0..n). */
    void (*predict)(const gdml_layout *l, const float *params, const float *x, size_t n,
                    uint8_t *pred, float *scratch);
    /*
     * Sparse kinds: the mean loss of rows[0..n) with labels y and, if grad is
     * not NULL, its gradient, written at the keys of the rows (gdml_model_keys)
     * only: every other entry of grad is left as it is.
     */
    double (*loss_grad_csr)(const gdml_layout *l, const float *params, gdml_csr rows,
                            const uint8_t *y, size_t n, float *grad);
    void (*predict_csr)(const gdml_layout *l, const float *params, gdml_csr rows, size_t n,
                        uint8_t *pred);
} gdml_model_ops;

/* The ops for a kind ("softmax"), or NULL if gdml has no such model. */
const gdml_model_ops *gdml_model_find(const char *kind);

/* Parses "softmax 784 10" or "mlp 784 256,128 10". GDML_ERR_FORMAT with e
 * saying what is wrong. */
gdml_err gdml_layout_parse(const char *text, gdml_layout *out, gdml_errmsg *e);

/* The layout of [model]: kind, inputs, hidden ("256,128", or "" for none)
 * and classes, checked as gdml_layout_parse checks a layout's text. */
gdml_err gdml_layout_make(const char *kind, uint32_t inputs, const char *hidden, uint32_t classes,
                          gdml_layout *out, gdml_errmsg *e);

/* Writes the text form of l into buf. */
void gdml_layout_format(const gdml_layout *l, char *buf, size_t cap);

/*
 * Checks that a data set with `inputs` features per row and labels below
 * `classes` fits layout l. GDML_ERR_INVALID with e saying, for the data set
 * named `what`, how many inputs and classes it has and the layout takes.
 */
gdml_err gdml_layout_check_data(const gdml_layout *l, size_t inputs, unsigned classes,
                                const char *what, gdml_errmsg *e);

/*
 * Accuracy and mean loss of params on n rows, in chunks of at most 1024 rows
 * (so that scratch stays small). Returns GDML_ERR_NOMEM or GDML_ERR_INVALID
 * (unknown kind).
 */
gdml_err gdml_model_evaluate(const gdml_layout *l, const float *params, const float *x,
                             const uint8_t *y, size_t n, double *accuracy, double *loss);

/*
 * Accuracy and mean loss of params on a data set held either way: dense rows
 * for the dense kinds, sparse rows for the sparse ones (GDML_ERR_INVALID if
 * the data set is held the other way).
 */
gdml_err gdml_model_evaluate_set(const gdml_layout *l, const float *params,
                                 const gdml_dataset *d, double *accuracy, double *loss);

/*
 * The keys a sparse model's batch touches: the distinct feature indices of
 * rows[0..n), in increasing order, then the bias (index inputs), into
 * keys[0..*count). keys has room for every entry of the rows plus one; marks
 * is a zeroed bitmap of inputs + 1 bits, left zeroed again.
 */
void gdml_model_keys(const gdml_layout *l, gdml_csr rows, size_t n, uint64_t *marks,
                     uint32_t *keys, size_t *count);

#endif
