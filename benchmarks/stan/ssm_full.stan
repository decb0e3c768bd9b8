// Poisson dynamic factor model, every parameter sampled, with the priors of jaxssm's MAP-EM:
//   mu_l ~ N(mu_bar, s_mu^2), Lambda_lk ~ N(0, s_Lambda^2), Q = I, a1 = 0, P1 = I, and
//   Phi_jk ~ N(0, 1) (jaxssm keeps Phi flat but its spectral radius <= 1; without some prior
//   NUTS's warm-up wanders into explosive Phi where the rates overflow),
//   f_1 = z_1, f_i = Phi f_{i-1} + z_i, z_i ~ N(0, I) (non-centred),
//   X_i(l) ~ Poisson(exp(offset_il + mu_l + Lambda_l' f_i)) for observed cells.
// Rotations of (Lambda, f) leave the likelihood unchanged; predictions (rates) are identified.
data {
  int<lower=1> N;
  int<lower=1> m;
  int<lower=1> q;
  int<lower=0> n_obs;
  array[n_obs] int<lower=1, upper=N> obs_window;
  array[n_obs] int<lower=1, upper=m> obs_location;
  array[n_obs] int<lower=0> obs_count;
  vector[n_obs] obs_offset;
  real mu_bar;
  real<lower=0> mu_scale;
  real<lower=0> loading_scale;
  int<lower=0> n_held;
  array[n_held] int<lower=1, upper=N> held_window;
  array[n_held] int<lower=1, upper=m> held_location;
  array[n_held] int<lower=0> held_count;
  vector[n_held] held_offset;
}
parameters {
  vector[m] mu;
  matrix[m, q] Lambda;
  matrix[q, q] Phi;
  array[N] vector[q] z;
}
transformed parameters {
  array[N] vector[q] f;
  f[1] = z[1];
  for (i in 2:N) f[i] = Phi * f[i - 1] + z[i];
}
model {
  mu ~ normal(mu_bar, mu_scale);
  to_vector(Lambda) ~ normal(0, loading_scale);
  to_vector(Phi) ~ normal(0, 1);
  for (i in 1:N) z[i] ~ std_normal();
  {
    vector[n_obs] eta;
    for (k in 1:n_obs)
      eta[k] = obs_offset[k] + mu[obs_location[k]] + Lambda[obs_location[k]] * f[obs_window[k]];
    obs_count ~ poisson_log(eta);
  }
}
generated quantities {
  vector[n_held] held_loglik;
  for (k in 1:n_held)
    held_loglik[k] = poisson_log_lpmf(held_count[k] | held_offset[k] + mu[held_location[k]]
                                      + Lambda[held_location[k]] * f[held_window[k]]);
}
