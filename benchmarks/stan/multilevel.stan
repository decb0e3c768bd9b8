// The seed's multilevel revenue model (004_53aa0720ca416606.txt), ported to current Stan:
// only the removed `int x[N]` array declarations change to `array[N] int x`.
data {
  int<lower=0> adsets;
  int<lower=0> campaigns;
  array[adsets] int<lower=1> adset2campaign;
  int<lower=0> observations;
  array[observations] int<lower=1> observation_adset;
  vector<lower=1>[observations] observation_conversion_count; // n_i
  vector<lower=0>[observations] observation_conversion_revenue; // r_i
}
transformed data {
  vector[observations] log_observation_conversion_count =
    log(observation_conversion_count);
  vector[observations] log_observation_conversion_revenue =
    log(observation_conversion_revenue);
}
parameters {
  real<lower=-5, upper=20> account_mu; // lambda
  real<lower=0, upper=5> account_mu_sd; // phi
  vector[campaigns] campaign_mu_z;
  real<lower=0, upper=5> campaign_mu_sd; // tau
  vector[adsets] adset_mu_z;
  real<lower=0.001, upper=2.5> revenue_sigma; // sigma
}
transformed parameters {
  vector[campaigns] campaign_mu; // mu_c
  vector[adsets] adset_mu; // theta_a
  campaign_mu = account_mu + account_mu_sd * campaign_mu_z;
  adset_mu = campaign_mu[adset2campaign] + campaign_mu_sd * adset_mu_z;
}
model {
  vector[observations] observation_mu; // theta_i
  vector[observations] observation_sigma; // sigma_i
  campaign_mu_z ~ normal(0, 1);
  adset_mu_z ~ normal(0, 1);
  account_mu_sd ~ exponential(1 / 0.05);
  campaign_mu_sd ~ exponential(1 / 0.05);
  revenue_sigma ~ inv_gamma(6, 4);
  observation_sigma = sqrt(log(1 + (
      exp(square(revenue_sigma)) - 1
    ) ./ observation_conversion_count));
  observation_mu = adset_mu[observation_adset] +
    log_observation_conversion_count +
    0.5 * (square(revenue_sigma) - square(observation_sigma));
  log_observation_conversion_revenue ~ normal(observation_mu, observation_sigma);
}
generated quantities {
  vector[campaigns] campaign_mean;
  vector[adsets] adset_mean;
  campaign_mean = exp(campaign_mu + 0.5 * square(revenue_sigma));
  adset_mean = exp(adset_mu + 0.5 * square(revenue_sigma));
}
