// Poisson dynamic factor model with the parameters fixed (at the Laplace-EM fit):
// NUTS over the latent trajectory f_{1:N} only, the reference for the Laplace posterior.
//   X_i(l) ~ Poisson(exp(offset_il + mu_l + Lambda_l' f_i)) for observed cells,
//   f_1 ~ N(a1, P1), f_i ~ N(Phi f_{i-1}, Q).
data {
  int<lower=1> N;
  int<lower=1> m;
  int<lower=1> q;
  int<lower=0> n_obs;
  array[n_obs] int<lower=1, upper=N> obs_window;
  array[n_obs] int<lower=1, upper=m> obs_location;
  array[n_obs] int<lower=0> obs_count;
  vector[n_obs] obs_offset;
  vector[m] mu;
  matrix[m, q] Lambda;
  matrix[q, q] Phi;
  cov_matrix[q] Q;
  vector[q] a1;
  cov_matrix[q] P1;
}
transformed data {
  matrix[q, q] L_Q = cholesky_decompose(Q);
  matrix[q, q] L_P1 = cholesky_decompose(P1);
}
parameters {
  array[N] vector[q] f;
}
model {
  f[1] ~ multi_normal_cholesky(a1, L_P1);
  for (i in 2:N) f[i] ~ multi_normal_cholesky(Phi * f[i - 1], L_Q);
  {
    vector[n_obs] eta;
    for (k in 1:n_obs)
      eta[k] = obs_offset[k] + mu[obs_location[k]] + Lambda[obs_location[k]] * f[obs_window[k]];
    obs_count ~ poisson_log(eta);
  }
}
