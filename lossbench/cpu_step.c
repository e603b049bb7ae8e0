/* One SGD step of the later layers of a shard's one-hidden-layer models, in one call.

       python -m lossbench bench --models 160 --shapes 784-30-10 --denormal-steps 0

   Built and called by lossbench/cpu_step.py (engine=c); the arithmetic is that of
   Core._per_model_step and Core._add_window_grad_norms (lossbench/ensemble_core.py), which stay
   the eager engine and the reference this is tested against (tests/test_cpu_step.py, float64).

   For each model m of group s (S groups of G models; B examples, H hidden units, O outputs), given
   its hidden activations a = sigma(z0) [B, H] (torch computed them: its sigmoid is vectorized):
       z     = a W1 + b1                                  ch. 1 eq. 22; written to out [B, O]
       d1    = the pair's delta(z, y)                     BP1, the formulas of lossbench/pairs.py
       d0    = (d1 W1^T) o a (1 - a),  e0 = step d0       BP2; step = -eta/m, 0 once frozen
       W1   <- decay W1 + step a^T d1,  b1 <- b1 + step sum_b d1     ch. 3 eqs. 93-94
   and adds |grad_b| and |grad_W| of both layers to grad_sum: grad_W1 = a^T d1 / B, and for layer 0
   |x^T d0|_F^2 = sum_b d0_b . (sum_c (x x^T)_bc d0_c), with x x^T the step's block of the window's
   Gram.

   Why C: in torch this is some 20 ops a step on [80, 10, 30] tensors, 2-65 us each, for a few
   microseconds of arithmetic (docs/cpu_core.md). Here the arithmetic runs on 16-lane vectors (GCC's
   vector extension): a row of the outputs padded to 16 lanes, or 16 hidden units, two examples at
   a time, with W1 transposed into a local [O, H] copy for BP2; no horizontal sums but one per
   gradient norm. Measured on one shard of 80 models, 784-30-10: 148 us a call with plain loops,
   61 us so (docs/cpu_core.md has the steps between). exp comes in vectors from glibc's libmvec
   (the `declare simd` below); without it (-DNO_MVEC, tried when the first build fails), scalar.
*/
#ifndef STEP_NAME
#include <math.h>
#include <stddef.h>
#include <string.h>

#ifndef NO_MVEC
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);
#endif

enum { SIGMOID_MSE = 0, SIGMOID_CE = 1, SOFTMAX_NLL = 2, LINEAR_MSE = 3 };  /* pairs.PAIR_CODES */
/* Largest batch and hidden width (and 16 outputs, a vector's lanes): the scratch arrays live on the
   calling thread's stack (about 240 KB in float64); cpu_step.LIMITS holds the same, checked first. */
enum { MAX_B = 32, MAX_H = 256 };

#define STEP_NAME cpu_step_f32
#define real float
#define EXP expf
#define SQRT sqrtf
#define ABS fabsf
#define VEC vec_f32
#include __FILE__
#undef STEP_NAME
#undef real
#undef EXP
#undef SQRT
#undef ABS
#undef VEC

#define STEP_NAME cpu_step_f64
#define real double
#define EXP exp
#define SQRT sqrt
#define ABS fabs
#define VEC vec_f64
#include __FILE__

#else  /* the step, once for each real type */

/* 16 lanes of real: a row of outputs, or 16 hidden units. GCC's vector extension, so that the
   accumulators below stay in registers (local arrays with `omp simd` went through memory). */
typedef real VEC __attribute__((vector_size(16 * sizeof(real))));

void STEP_NAME(
    int S, int G, int B, int H, int O, const int *pair, int l2,
    const real *a, long a_group,          /* [S, B, G H] at group stride a_group */
    real *e0, long e_group,               /* the same layout: layer 0's e = step d0 */
    const real *y, long y_group,          /* [S, B, O] one-hot targets at group stride y_group */
    const real *gram, long gram_group, long gram_row,  /* [S, B, B]: the step's block of x x^T */
    real *W1, real *b1,                   /* [M, H, O], [M, 1, O]: updated in place */
    const real *step, const real *decay,  /* [M]: -eta/m (0 once frozen); 1 - eta lambda / n */
    real *out,                            /* [M, B, O]: the output z, for the window's costs */
    real *grad_sum, long grad_row)        /* rows 0..3 at stride grad_row: |grad_b1|, |grad_W1|, .. */
{
    /* Local copies padded with zeros: examples to an even BP (loops take two at a time), hidden
       units to HV vectors of 16, outputs to 16 lanes. Pads contribute 0 to every sum. */
    enum { HV_MAX = MAX_H / 16 };
    VEC ap[MAX_B][HV_MAX], Wp[MAX_H], Wt[16][HV_MAX], z[MAX_B], d1[MAX_B], yp[MAX_B], d0[MAX_B][HV_MAX];
    const long GH = (long)G * H;
    const int BP = (B + 1) / 2 * 2, HV = (H + 15) / 16, HP = HV * 16;
    real wl[MAX_H * 16 + 16];
    memset(wl, 0, sizeof wl);
    memset(Wt, 0, sizeof Wt);
    for (int s = 0; s < S; s++) {
        const real *gs = gram + s * gram_group;
        for (int b = 0; b < BP; b++)  /* the group's targets */
            for (int o = 0; o < 16; o++) ((real *)&yp[b])[o] = b < B && o < O ? y[s * y_group + b * O + o] : 0;
        for (int g = 0; g < G; g++) {
            const long m = (long)s * G + g;
            const real *as = a + s * a_group + g * H;  /* example b's activations at as + b GH */
            real *es = e0 + s * e_group + g * H;
            real *W = W1 + m * H * O, *bm = b1 + m * O, *zm = out + m * B * O;
            const real st = step[m], dec = l2 ? decay[m] : 1;
            /* copied in through scalar views (an element store into a vector type goes through memory) */
            for (int b = 0; b < BP; b++) {
                real *row = (real *)ap[b];
                for (int h = 0; h < HP; h++) row[h] = b < B && h < H ? as[b * GH + h] : 0;
            }
            /* W1 as 16-lane rows: row h is W1's row h and the start of the next (pad lanes, whose
               outputs are never used), read from a copy with 16 zeros after its end */
            memcpy(wl, W, sizeof(real) * H * O);
            real *wt = (real *)Wt;  /* Wt[o] holds HV_MAX * 16 reals, zero beyond H */
            for (int h = 0; h < H; h++) {
                memcpy(&Wp[h], wl + h * O, sizeof(VEC));
                for (int o = 0; o < O; o++) wt[o * HV_MAX * 16 + h] = wl[h * O + o];
            }
            VEC bias = {0};
            for (int o = 0; o < O; o++) ((real *)&bias)[o] = bm[o];
            /* forward: z_b = b1 + sum_h a_bh W1_h over the output lanes, two examples at a time */
            for (int b = 0; b < BP; b += 2) {
                VEC z0 = bias, z1 = bias;
                for (int h = 0; h < H; h++) {
                    z0 += ((real *)ap[b])[h] * Wp[h];
                    z1 += ((real *)ap[b + 1])[h] * Wp[h];
                }
                z[b] = z0, z[b + 1] = z1;
            }
            for (int b = 0; b < B; b++)
                for (int o = 0; o < O; o++) zm[b * O + o] = ((real *)&z[b])[o];
            /* BP1: the pair's delta, 0 in the pad lanes and pad examples */
            for (int b = 0; b < BP; b++) {
                real *zb = (real *)&z[b], *db = (real *)&d1[b], *yb = (real *)&yp[b];
                switch (pair[s]) {
                case SIGMOID_MSE:  /* (a - y) sigma'(z), sigma'(z) = sigma(z) sigma(-z) */
                case SIGMOID_CE:   /* a - y */
                    #pragma omp simd
                    for (int o = 0; o < 16; o++) {
                        const real t = EXP(-ABS(zb[o])), p = 1 / (1 + t), q = t * p;  /* sigma(|z|), sigma(-|z|) */
                        const real diff = (zb[o] >= 0 ? p : q) - yb[o];
                        db[o] = pair[s] == SIGMOID_MSE ? diff * (p * q) : diff;
                    }
                    break;
                case SOFTMAX_NLL: {  /* softmax(z) - y, softmax as exp(z - max) / sum */
                    real top = zb[0], sum = 0;
                    for (int o = 1; o < O; o++) top = zb[o] > top ? zb[o] : top;
                    #pragma omp simd
                    for (int o = 0; o < 16; o++) db[o] = o < O ? EXP(zb[o] - top) : 0;
                    for (int o = 0; o < O; o++) sum += db[o];
                    #pragma omp simd
                    for (int o = 0; o < 16; o++) db[o] = db[o] / sum - yb[o];
                    break;
                }
                default:  /* LINEAR_MSE: z - y */
                    d1[b] = z[b] - yp[b];
                }
                for (int o = 0; o < 16; o++)
                    if (b >= B || o >= O) db[o] = 0;
            }
            /* BP2 with the weights before the update: d0_b = (sum_o d1_bo W1^T_o) o a_b (1 - a_b),
               16 hidden units of two examples at a time */
            for (int b = 0; b < BP; b += 2)
                for (int v = 0; v < HV; v++) {
                    VEC acc0 = {0}, acc1 = {0};
                    for (int o = 0; o < O; o++) {
                        acc0 += ((real *)&d1[b])[o] * Wt[o][v];
                        acc1 += ((real *)&d1[b + 1])[o] * Wt[o][v];
                    }
                    d0[b][v] = acc0 * (ap[b][v] - ap[b][v] * ap[b][v]);
                    d0[b + 1][v] = acc1 * (ap[b + 1][v] - ap[b + 1][v] * ap[b + 1][v]);
                }
            for (int b = 0; b < B; b++) {
                real *eb = es + b * GH;
                const real *row = (real *)d0[b];
                for (int h = 0; h < H; h++) eb[h] = st * row[h];
            }
            /* layer 1: B grad_W1 = a^T d1, two rows h at a time, and the update (eqs. 93-94) */
            VEC sq_w = {0}, bsum = {0};
            for (int h = 0; h < HP; h += 2) {
                VEC g0 = {0}, g1 = {0};
                for (int b = 0; b < B; b++) {
                    g0 += ((real *)ap[b])[h] * d1[b];
                    g1 += ((real *)ap[b])[h + 1] * d1[b];
                }
                sq_w += g0 * g0 + g1 * g1;
                const real *r0 = (real *)&g0, *r1 = (real *)&g1;
                for (int o = 0; o < O; o++) {
                    if (h < H) W[h * O + o] = (l2 ? dec * W[h * O + o] : W[h * O + o]) + st * r0[o];
                    if (h + 1 < H) W[(h + 1) * O + o] = (l2 ? dec * W[(h + 1) * O + o] : W[(h + 1) * O + o]) + st * r1[o];
                }
            }
            for (int b = 0; b < B; b++) bsum += d1[b];
            real sq_w1 = 0, sq_b1 = 0;
            for (int o = 0; o < O; o++) {
                sq_w1 += ((real *)&sq_w)[o];
                sq_b1 += ((real *)&bsum)[o] * ((real *)&bsum)[o];
                bm[o] += st * ((real *)&bsum)[o];
            }
            grad_sum[2 * grad_row + m] += SQRT(sq_b1) / B;
            grad_sum[3 * grad_row + m] += SQRT(sq_w1) / B;
            /* layer 0: |B grad_b0|^2 = |sum_b d0_b|^2, |B grad_W0|^2 = sum_b d0_b . (sum_c gram_bc d0_c) */
            VEC sq_w0v = {0}, sq_b0v = {0};
            for (int v = 0; v < HV; v++) {
                VEC sum0 = {0};
                for (int b = 0; b < B; b++) {
                    VEC gd = {0};
                    for (int c = 0; c < B; c++) gd += gs[b * gram_row + c] * d0[c][v];
                    sq_w0v += d0[b][v] * gd;
                    sum0 += d0[b][v];
                }
                sq_b0v += sum0 * sum0;
            }
            real sq_w0 = 0, sq_b0 = 0;
            for (int j = 0; j < 16; j++) { sq_w0 += ((real *)&sq_w0v)[j]; sq_b0 += ((real *)&sq_b0v)[j]; }
            grad_sum[m] += SQRT(sq_b0) / B;
            grad_sum[grad_row + m] += SQRT(sq_w0 > 0 ? sq_w0 : 0) / B;
        }
    }
}
#endif
