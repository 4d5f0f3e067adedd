"""The built-in synthetic emotional speech corpus: an offline stand-in for EmoDB.

No real emotional speech corpus may ship with sercore, so every notebook, test and CI run can fall
back on this one. It is made by a small source-filter synthesiser (Fant's acoustic theory of speech
production, in the manner of Klatt's cascade synthesiser) written in numpy and ``scipy.signal``:

* **Source.** A Rosenberg glottal flow pulse train whose period follows an F0 contour (declination,
  pitch accents on stressed syllables, a final fall or rise, slow drift), with cycle-to-cycle jitter
  and shimmer, an open quotient that sets the voice from pressed to breathy, and aspiration noise
  that is pulsed by the glottal opening. Radiation is a first difference of the flow; a one-pole
  low-pass sets the spectral tilt of the voiced source.
* **Filter.** Five second-order IIR formant resonators in cascade whose frequencies move smoothly
  between per-phone targets (German-like vowels, consonant loci) and scale with the speaker's
  vocal-tract length; their coefficients are updated every 5 ms (``BLOCK`` samples) with the filter
  state carried across, as in Klatt (1980). Fricatives and plosive bursts are band-pass noise in a
  parallel branch; plosives have closures (with a voice bar when voiced) and aspiration.
* **Text and timing.** Ten fixed "sentences" (ids ``a01``..``a05``, ``b01``..``b05`` as in EmoDB) of
  CV/CVC syllables with lexical stress and phrase boundaries; phone durations scale with speaking
  rate, phrase-final lengthening and random variation; pauses fall between phrases and, now and
  then, between words.

Emotions are profiles of the acoustic correlates reported in the literature, relative to neutral
(Banse & Scherer 1996, J. Pers. Soc. Psychol. 70(3):614-636; Juslin & Laukka 2003, Psychol. Bull.
129(5):770-814, Table 7; Scherer 2003, Speech Commun. 40:227-256, Table 3):

=========  =======  =========  ======  =========  ====================  =========================
emotion    F0 mean  F0 range   rate    intensity  spectral tilt         voice quality, other
=========  =======  =========  ======  =========  ====================  =========================
anger      up       wide       fast    high       flat (more HF energy)  pressed, few pauses
happiness  up       widest     fast    raised     slightly flat          final rises
fear       highest  narrower   fastest raised     slightly flat          jitter, shimmer, breathy
sadness    down     narrow     slow    low        steep                 breathy, long pauses
boredom    down     narrowest  slow    lowered    steep                 monotone
disgust    down     moderate   slow    slightly   slightly steep        creaky (jitter, shimmer)
neutral    --       --         --      --         --                    --
=========  =======  =========  ======  =========  ====================  =========================

Each utterance draws its parameters from normal (or log-normal) distributions around its emotion's
means (``SPREAD`` holds the standard deviations), so emotions overlap: the task is neither trivial
nor hopeless. :func:`baseline_accuracy` measures how hard it is (speaker-independent logistic
regression on log-mel statistics); the corpus README records the figure for the full corpus.

The corpus imitates EmoDB's layout: speakers ``03 08 09 10 11 12 13 14 15 16`` with EmoDB's genders,
files ``wav/SSTTTEv.wav`` (speaker, text, emotion letter W L E A F T N, version letter), 16 kHz mono
16-bit PCM, and a ``metadata.csv`` with the columns of :func:`sercore.load_corpus` (``path`` relative
to the corpus folder). Generation is deterministic: the same seed gives byte-identical files.

Examples
--------
>>> from sercore.synth import generate_corpus
>>> root = generate_corpus("data/raw/synthetic-small", size="small", seed=0)   # doctest: +SKIP
>>> sorted(p.name for p in (root / "wav").iterdir())[:2]                       # doctest: +SKIP
['03a01Aa.wav', '03a01Ea.wav']
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, CorpusError

#: Sample rate of every generated file (Hz).
SAMPLE_RATE = 16000
#: Bumped whenever a change to this module changes the generated audio or metadata.
GENERATOR_VERSION = "1.1"
#: Samples between formant-coefficient updates (5 ms at 16 kHz).
BLOCK = 80
#: Level of a neutral utterance's speech portions, dB re full scale (RMS); emotions add to it.
REFERENCE_LEVEL_DBFS = -28.0
#: Peak ceiling (-1 dBFS): no sample of a generated file exceeds it.
PEAK_CEILING = 0.89
#: Samples above this magnitude go through a soft-knee limiter (tanh) that keeps them under the ceiling.
LIMITER_KNEE = 0.5

METADATA_COLUMNS = ["utt_id", "path", "corpus", "speaker", "gender", "emotion", "text", "take",
                    "intensity", "duration", "sample_rate", "recognition", "naturalness"]
_STAMP = "synth.json"


# --------------------------------------------------------------------------------------------
# Speakers, emotions, sentences
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker.

    Attributes
    ----------
    id : str
        EmoDB speaker id (two digits).
    gender : str
        ``"female"`` or ``"male"``.
    f0_hz : float
        Base fundamental frequency (Hz) of neutral speech.
    vtl_scale : float
        Formant scale factor (1 = the male reference vocal tract; shorter tracts scale up).
    rate : float
        Speaking-rate factor (1 = reference; > 1 faster).
    breathiness : float
        Aspiration-noise level added to the emotion's, relative to the voiced excitation.
    tilt : float
        Offset of the source low-pass coefficient (> 0 steeper spectral tilt).
    """

    id: str
    gender: str
    f0_hz: float
    vtl_scale: float
    rate: float
    breathiness: float
    tilt: float


SPEAKERS: dict[str, Speaker] = {s.id: s for s in [
    Speaker("03", "male", 112.0, 1.00, 1.00, 0.05, 0.00),
    Speaker("08", "female", 212.0, 1.16, 1.05, 0.12, 0.03),
    Speaker("09", "female", 226.0, 1.20, 0.95, 0.08, 0.06),
    Speaker("10", "male", 122.0, 0.97, 1.08, 0.04, -0.03),
    Speaker("11", "male", 100.0, 0.94, 0.92, 0.07, 0.05),
    Speaker("12", "male", 132.0, 1.04, 1.03, 0.03, -0.04),
    Speaker("13", "female", 196.0, 1.14, 1.10, 0.10, 0.00),
    Speaker("14", "female", 238.0, 1.22, 0.90, 0.14, 0.04),
    Speaker("15", "male", 106.0, 0.98, 0.97, 0.06, 0.02),
    Speaker("16", "female", 204.0, 1.18, 1.00, 0.09, -0.02),
]}


@dataclass(frozen=True)
class EmotionProfile:
    """Mean prosodic and voice-quality settings of one emotion, relative to neutral speech.

    Attributes
    ----------
    letter, name : str
        EmoDB emotion letter and canonical English name.
    f0_shift_st : float
        Shift of the F0 level (semitones).
    f0_range : float
        Factor on the pitch-accent heights, declination and final movement.
    rate : float
        Speaking-rate factor (> 1 faster).
    level_db : float
        Speech level relative to neutral (dB).
    tilt : float
        Added to the source low-pass coefficient (> 0 steeper tilt, < 0 flatter).
    open_quotient : float
        Added to the glottal open quotient (> 0 breathier, < 0 pressed).
    jitter : float
        Standard deviation of the relative cycle-to-cycle period perturbation.
    shimmer : float
        Standard deviation of the cycle-to-cycle log amplitude.
    breathiness : float
        Added aspiration-noise level.
    pause : float
        Factor on pause probability and duration.
    final_rise : float
        Probability of a final rise (else a final fall).
    """

    letter: str
    name: str
    f0_shift_st: float
    f0_range: float
    rate: float
    level_db: float
    tilt: float
    open_quotient: float
    jitter: float
    shimmer: float
    breathiness: float
    pause: float
    final_rise: float


EMOTIONS: dict[str, EmotionProfile] = {e.letter: e for e in [
    #              letter name        F0st  range rate  dB    tilt   OQ     jit    shim  breath pause rise
    EmotionProfile("W", "anger",      3.5, 1.45, 1.12, 6.0, -0.20, -0.10, 0.010, 0.05, -0.02, 0.70, 0.10),
    EmotionProfile("L", "boredom",   -2.0, 0.45, 0.86, -3.0, 0.12, 0.04, 0.008, 0.04, 0.03, 1.25, 0.05),
    EmotionProfile("E", "disgust",   -2.5, 1.10, 0.84, -1.0, 0.05, -0.05, 0.018, 0.08, 0.02, 1.30, 0.05),
    EmotionProfile("A", "fear",       5.5, 0.85, 1.22, 2.0, -0.08, 0.02, 0.024, 0.09, 0.08, 0.90, 0.50),
    EmotionProfile("F", "happiness",  4.0, 1.75, 1.08, 3.0, -0.10, -0.03, 0.010, 0.05, 0.00, 0.80, 0.40),
    EmotionProfile("T", "sadness",   -1.5, 0.55, 0.78, -5.0, 0.20, 0.10, 0.015, 0.07, 0.14, 1.60, 0.05),
    EmotionProfile("N", "neutral",    0.0, 1.00, 1.00, 0.0, 0.00, 0.00, 0.008, 0.04, 0.00, 1.00, 0.20),
]}

#: Per-utterance standard deviations of the draws around an emotion's means (log scale for factors).
#: They make the emotions overlap; tuned so that :func:`baseline_accuracy` lands between 45 and 80 %.
SPREAD = {
    "f0_shift_st": 1.6, "f0_range": 0.25, "rate": 0.07, "level_db": 2.0, "tilt": 0.07,
    "open_quotient": 0.04, "jitter": 0.3, "shimmer": 0.3, "breathiness": 0.03, "pause": 0.2,
}

#: The ten sentences: words separated by spaces, syllables by ".", stress marked by "'", phrase
#: boundaries by ",", ":" lengthens a vowel. Vowels a e i o u E @ ü; consonants p t k b d g f s S x h
#: v z m n N l r j. The same "text" is spoken for every speaker and emotion.
SENTENCES: dict[str, str] = {
    "a01": "das 'tu:x 'li:kt 'o:.b@n",
    "a02": "zi: 'ge:t 'na:x 'hau.z@",
    "a03": "'hoi.t@ 'a:.b@nt 'zit.s@n vi:r 'al.l@ bei 'ti:S",
    "a04": "'ges.t@rn 'ha.b@ ix das 'bux 'ge:.b@n, 'o:.n@ 'fra:.g@",
    "a05": "di: 'ta.f@l 'li:kt 'ne:.b@n dem pa.'pi:r, 'gans 'o:.b@n",
    "b01": "'va.rum 'zint zi: so: 'fru:, 'vo: vi:r 'doxt 'ga.r@ 'nixt 'vus.t@n",
    "b02": "das 'vas.s@r 'li:f 'ü:.b@r den 'bo:.d@n, 'a:.b@nts 'tra:k ix es 'ap",
    "b03": "'di: 'bei.d@n 'gin.g@n 'ge:.r@n 'spa.tsi:.r@n, 'a:.b@r 'hoi.t@ 'rek.n@t es",
    "b04": "'mor.g@n 'frü: 'ge:.@n vi:r 'a.l@ 'in di: 'stat, 'dan 'ke:.r@n vi:r 'tsu.rük",
    "b05": "'zo: 'fi:.l@ 'bü.x@r 'la:.g@n 'im 'kel.l@r, 'ke:.n@r 'vol.t@ zi:, 'al.l@ 'vek",
}

#: The speakers and sentences of each corpus size (every size has all seven emotions, one take).
SIZES: dict[str, dict] = {
    "full": {"corpus": "synthetic", "speakers": list(SPEAKERS), "sentences": list(SENTENCES)},
    "small": {"corpus": "synthetic-small", "speakers": ["03", "08", "09", "10"],
              "sentences": ["a01", "a02"]},
}

# --------------------------------------------------------------------------------------------
# Phones
# --------------------------------------------------------------------------------------------
# Vowel formant targets F1..F4 (Hz) of the reference (male) vocal tract, German-like.
_VOWELS = {
    "a": (730, 1250, 2500, 3400), "e": (390, 2100, 2650, 3500), "E": (560, 1800, 2550, 3500),
    "i": (280, 2250, 2950, 3600), "o": (420, 780, 2450, 3350), "u": (310, 760, 2300, 3300),
    "@": (500, 1500, 2500, 3450), "ü": (290, 1650, 2150, 3300),
}
# Consonants: kind, place locus F1..F4 (None: take the neighbouring vowel's), voiced, noise class.
# kinds: P plosive, F fricative, N nasal, L liquid/approximant, H aspirate.
_CONSONANTS = {
    "p": ("P", (250, 900, 2300, 3300), False, "lab"), "b": ("P", (250, 900, 2300, 3300), True, "lab"),
    "t": ("P", (280, 1750, 2700, 3500), False, "alv"), "d": ("P", (280, 1750, 2700, 3500), True, "alv"),
    "k": ("P", (300, 1900, 2200, 3400), False, "vel"), "g": ("P", (300, 1900, 2200, 3400), True, "vel"),
    "f": ("F", (300, 1000, 2400, 3400), False, "f"), "v": ("F", (300, 1000, 2400, 3400), True, "f"),
    "s": ("F", (300, 1700, 2700, 3500), False, "s"), "z": ("F", (300, 1700, 2700, 3500), True, "s"),
    "S": ("F", (300, 1800, 2400, 3400), False, "S"), "x": ("F", (400, 1300, 2300, 3300), False, "x"),
    "m": ("N", (260, 1000, 2300, 3300), True, None), "n": ("N", (260, 1500, 2600, 3400), True, None),
    "N": ("N", (260, 1900, 2300, 3400), True, None), "l": ("L", (360, 1300, 2700, 3500), True, None),
    "r": ("L", (480, 1250, 2300, 3300), True, None), "h": ("H", None, False, None),
    "j": ("L", (280, 2100, 2900, 3500), True, None),
}
# Noise bands (Hz) and gains (relative to the voiced output level) of fricatives and bursts.
_NOISE = {
    "f": (1200.0, 7000.0, 0.12), "s": (3800.0, 7600.0, 0.55), "S": (1900.0, 5500.0, 0.45),
    "x": (1400.0, 3600.0, 0.30), "lab": (400.0, 2500.0, 0.45), "alv": (2500.0, 7200.0, 0.70),
    "vel": (1200.0, 3600.0, 0.65),
}
_NOISE_CLASSES = list(_NOISE)
_F5 = 4500.0          # fifth formant of the reference tract (Hz)
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 260.0])     # formant bandwidths (Hz)


def _parse_sentence(text: str) -> list[list[list[tuple[bool, str]]]]:
    """Split a sentence into phrases -> words -> syllables ``(stressed, phones)``."""
    phrases = []
    for phrase in text.split(","):
        words = []
        for word in phrase.split():
            syllables = []
            for syl in word.split("."):
                stressed = syl.startswith("'")
                syllables.append((stressed, syl.lstrip("'")))
            words.append(syllables)
        phrases.append(words)
    return phrases


def _seg(dur: float, F=None, av: float = 0.0, ah: float = 0.0, af: float = 0.0, noise: str | None = None,
         stress: bool = False, vowel: bool = False) -> dict:
    """One segment: duration (s), formant targets F1..F4 (Hz; None = the next vowel's), voicing
    ``av``, aspiration ``ah`` and frication ``af`` amplitudes, noise class, stress, nucleus flag."""
    return dict(dur=dur, F=F, av=av, ah=ah, af=af, noise=noise, stress=stress, vowel=vowel)


def _segments(text: str, rate: float, pause: float, rng: np.random.Generator) -> list[dict]:
    """The segments (see :func:`_seg`) of one utterance of ``text``, with its timing drawn from ``rng``.

    Plosives become closure + burst (+ aspiration when voiceless); phrase-final syllables are
    lengthened; pauses separate phrases and, now and then, words; silence leads and trails.
    """
    segs = [_seg(rng.uniform(0.1, 0.2))]
    phrases = _parse_sentence(text)
    for p_i, phrase in enumerate(phrases):
        for w_i, word in enumerate(phrase):
            for s_i, (stressed, phones) in enumerate(word):
                final = (w_i == len(phrase) - 1) and (s_i == len(word) - 1)
                stretch = (1.35 if final else 1.0) / rate
                for i, ph in enumerate(phones):
                    # Duration variation (drawn for every symbol, ":" too, to keep the stream stable).
                    d = stretch * float(np.exp(0.12 * rng.standard_normal()))
                    if ph == ":":
                        continue
                    long_vowel = phones[i + 1:i + 2] == ":"
                    if ph in _VOWELS:
                        dur = (0.11 if long_vowel else 0.065) * (1.25 if stressed else 1.0)
                        dur = 0.045 if ph == "@" else dur
                        segs.append(_seg(dur * d, _VOWELS[ph], av=1.0, stress=stressed, vowel=True))
                        continue
                    if ph not in _CONSONANTS:
                        raise ConfigError(f"sentence {text!r}: unknown phone {ph!r}; use one of "
                                          f"{''.join(_VOWELS)}{''.join(_CONSONANTS)}")
                    kind, locus, voiced, noise = _CONSONANTS[ph]
                    if kind == "P":
                        segs.append(_seg(0.045 * d, locus, av=0.22 if voiced else 0.0))       # closure
                        segs.append(_seg(0.012, locus, af=0.5 if voiced else 1.0, noise=noise))  # burst
                        if not voiced:
                            segs.append(_seg(0.025 * d, ah=0.7))                             # aspiration
                    elif kind == "F":
                        segs.append(_seg(0.075 * d, locus, av=0.45 if voiced else 0.0,
                                         af=0.6 if voiced else 1.0, noise=noise))
                    elif kind == "N":
                        segs.append(_seg(0.05 * d, locus, av=0.55))
                    elif kind == "L":
                        segs.append(_seg(0.045 * d, locus, av=0.75))
                    else:  # h
                        segs.append(_seg(0.05 * d, ah=1.0))
            # Now and then a short pause between words (more often in slow, hesitant emotions).
            if w_i < len(phrase) - 1 and rng.random() < 0.08 * pause:
                segs.append(_seg(rng.uniform(0.04, 0.12) * pause))
        if p_i < len(phrases) - 1:
            segs.append(_seg(rng.uniform(0.15, 0.3) * pause / rate ** 0.5))
    segs.append(_seg(rng.uniform(0.1, 0.2)))
    # Segments without targets (h, aspiration, pauses) take the next vowel's formants, else the last.
    nxt = _VOWELS["@"]
    for seg in reversed(segs):
        if seg["vowel"]:
            nxt = seg["F"]
        elif seg["F"] is None:
            seg["F"] = nxt
    return segs


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------
def _draw_parameters(speaker: Speaker, emotion: EmotionProfile, rng: np.random.Generator) -> dict:
    """One utterance's voice settings: the emotion's means plus speaker offsets plus random spread."""
    n = rng.standard_normal(10)
    sd = SPREAD
    return dict(
        f0_shift_st=emotion.f0_shift_st + sd["f0_shift_st"] * n[0],
        f0_range=emotion.f0_range * np.exp(sd["f0_range"] * n[1]),
        rate=speaker.rate * emotion.rate * np.exp(sd["rate"] * n[2]),
        level_db=emotion.level_db + sd["level_db"] * n[3],
        tilt=float(np.clip(0.45 + speaker.tilt + emotion.tilt + sd["tilt"] * n[4], 0.0, 0.93)),
        open_quotient=float(np.clip(0.6 + emotion.open_quotient + sd["open_quotient"] * n[5], 0.35, 0.9)),
        jitter=emotion.jitter * np.exp(sd["jitter"] * n[6]),
        shimmer=emotion.shimmer * np.exp(sd["shimmer"] * n[7]),
        breathiness=float(max(0.0, speaker.breathiness + emotion.breathiness
                              + sd["breathiness"] * n[8])),
        pause=emotion.pause * np.exp(sd["pause"] * n[9]),
        final_rise=bool(rng.random() < emotion.final_rise),
    )


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-weighted moving average along axis 0 with edge padding (same length)."""
    if width < 2:
        return x
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    pad = width // 2
    xp = np.pad(x, [(pad, width - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, w, mode="valid")
    return np.stack([np.convolve(xp[:, j], w, mode="valid") for j in range(x.shape[1])], axis=1)


def _f0_contour(t: np.ndarray, segs: list[dict], seg_start: np.ndarray, p: dict, base_hz: float,
                rng: np.random.Generator) -> np.ndarray:
    """F0 (Hz) at times ``t`` (s): level, declination, accents, final movement and drift."""
    rng_ = p["f0_range"]
    voiced = [i for i, s in enumerate(segs) if s["vowel"]]
    t0 = seg_start[voiced[0]]
    t1 = seg_start[voiced[-1]] + segs[voiced[-1]]["dur"]
    span = max(t1 - t0, 1e-3)
    rel = np.clip((t - t0) / span, 0.0, 1.0)
    st = p["f0_shift_st"] - 2.5 * rng_ * rel                                  # declination
    for i in voiced:                                                            # pitch accents
        if segs[i]["stress"]:
            centre = seg_start[i] + 0.6 * segs[i]["dur"]
            height = 3.0 * rng_ * rng.uniform(0.5, 1.3)
            st = st + height * np.exp(-0.5 * ((t - centre) / (0.07 / p["rate"])) ** 2)
    last = seg_start[voiced[-1]]
    ramp = np.clip((t - last) / max(segs[voiced[-1]]["dur"], 0.03), 0.0, 1.0)
    st = st + (4.0 if p["final_rise"] else -3.0) * rng_ * ramp                 # final rise / fall
    phases = rng.uniform(0, 2 * np.pi, 3)
    for k, ph in enumerate(phases):                                             # slow drift
        st = st + 0.35 * np.sin(2 * np.pi * (0.7 + 0.9 * k) * t + ph)
    return np.clip(base_hz * 2.0 ** (st / 12.0), 55.0, 600.0)


def _rosenberg(frac: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg (1971) glottal flow of phase ``frac`` in [0, 1) of a cycle; peak 1."""
    tp = 0.7 * open_quotient            # opening phase
    tn = 0.3 * open_quotient            # closing phase
    flow = np.zeros_like(frac)
    opening = frac < tp
    closing = (frac >= tp) & (frac < tp + tn)
    flow[opening] = 0.5 * (1.0 - np.cos(np.pi * frac[opening] / tp))
    flow[closing] = np.cos(0.5 * np.pi * (frac[closing] - tp) / tn)
    return flow


def _noise_sos(name: str):
    from scipy.signal import butter

    lo, hi, _ = _NOISE[name]
    return butter(2, [lo, min(hi, 0.47 * SAMPLE_RATE)], btype="bandpass", fs=SAMPLE_RATE, output="sos")


_NOISE_FILTERS: dict = {}


def _resonator(x: np.ndarray, freq: np.ndarray, bandwidth: float) -> np.ndarray:
    """Second-order formant resonator (unity gain at 0 Hz) with one centre frequency per block.

    The resonator ``G / ((1 - p z^-1)(1 - p* z^-1))`` with pole ``p = r exp(i 2 pi F / sr)`` is run in
    its partial-fraction form ``y = 2 G Re(w)``, ``w[n] = p w[n-1] + A x[n]``, ``A = p / (p - p*)``:
    a complex one-pole filter whose state stays well-behaved when ``p`` changes from block to block.
    Within a block ``p`` is constant, so the block's response is computed for all blocks at once
    (powers of ``p`` and a cumulative sum); only the block-boundary states need a short loop.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_blocks, block)
        Input signal cut into blocks.
    freq : numpy.ndarray, shape (n_blocks,)
        Centre frequency of each block (Hz).
    bandwidth : float
        3 dB bandwidth (Hz).

    Returns
    -------
    numpy.ndarray, shape (n_blocks, block)
    """
    n_blocks, block = x.shape
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    log_p = np.log(r) + 2j * np.pi * freq / SAMPLE_RATE                       # (n_blocks,)
    p = np.exp(log_p)
    gain = np.abs(1.0 - p) ** 2                                               # G, DC gain 1
    a = p / (p - np.conj(p))
    j = np.arange(block)
    p_pow = np.exp(log_p[:, None] * j)                                        # p^j
    zero_state = p_pow * np.cumsum(a[:, None] * x / p_pow, axis=1)            # from this block's input
    carry = p_pow * p[:, None]                                                # p^(j+1)
    p_block = (p_pow[:, -1] * p).tolist()                                     # p^block
    ends = zero_state[:, -1].tolist()
    state = np.empty(n_blocks, dtype=complex)                                 # w at the previous block's end
    s = 0j
    for k in range(n_blocks):
        state[k] = s
        s = p_block[k] * s + ends[k]
    w = carry * state[:, None] + zero_state
    return 2.0 * gain[:, None] * w.real


def synthesize_utterance(speaker: Speaker, text: str, emotion: EmotionProfile,
                         rng: np.random.Generator) -> np.ndarray:
    """Synthesise one utterance.

    Parameters
    ----------
    speaker : Speaker
        Who speaks (base F0, vocal-tract length, rate, voice quality).
    text : str
        Sentence in the notation of :data:`SENTENCES`.
    emotion : EmotionProfile
        Mean settings of the emotion; the utterance draws its own around them from ``rng``.
    rng : numpy.random.Generator
        Source of all randomness (the result is a deterministic function of its state).

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64
        Waveform at :data:`SAMPLE_RATE`, its speech portions at the drawn level (dB re full scale),
        peaks above :data:`LIMITER_KNEE` soft-limited, never above :data:`PEAK_CEILING`.
    """
    from scipy.signal import lfilter, sosfilt

    sr = SAMPLE_RATE
    p = _draw_parameters(speaker, emotion, rng)
    segs = _segments(text, p["rate"], p["pause"], rng)

    # Segment tracks at block rate (5 ms).
    n_blocks_seg = np.array([max(1, int(round(s["dur"] * sr / BLOCK))) for s in segs])
    n_blocks = int(n_blocks_seg.sum())
    n = n_blocks * BLOCK
    seg_start = np.concatenate([[0], np.cumsum(n_blocks_seg)[:-1]]) * BLOCK / sr
    rep = lambda key: np.repeat(np.array([s[key] for s in segs], dtype=float), n_blocks_seg, axis=0)
    formants = _smooth(rep("F"), 7) * speaker.vtl_scale                       # (n_blocks, 4)
    stress_gain = np.repeat([1.25 if s["stress"] else 1.0 for s in segs], n_blocks_seg)
    av_b = _smooth(rep("av") * stress_gain, 3)
    ah_b = _smooth(rep("ah"), 3)
    noise_idx = np.repeat([_NOISE_CLASSES.index(s["noise"]) if s["noise"] else -1 for s in segs],
                          n_blocks_seg)
    af_b = rep("af")

    t_block = (np.arange(n_blocks) + 0.5) * BLOCK / sr
    t = np.arange(n) / sr
    up = lambda x: np.interp(t, t_block, x)
    av, ah = up(av_b), up(ah_b)

    # Glottal source: Rosenberg pulses on an F0 contour, with jitter and shimmer.
    f0 = up(_f0_contour(t_block, segs, seg_start, p, speaker.f0_hz, rng))
    cycle = np.floor(np.cumsum(f0) / sr).astype(np.int64)
    n_cycles = int(cycle[-1]) + 2
    period_factor = 1.0 + p["jitter"] * rng.standard_normal(n_cycles)
    phase = np.cumsum(f0 / np.clip(period_factor[cycle], 0.5, 1.5)) / sr
    cycle = np.floor(phase).astype(np.int64)
    amp = np.exp(p["shimmer"] * rng.standard_normal(int(cycle[-1]) + 1))[cycle]
    flow = _rosenberg(phase - cycle, p["open_quotient"]) * amp * av
    voiced = np.diff(flow, prepend=0.0)                                        # radiation
    a = p["tilt"]
    voiced = lfilter([1.0 - a], [1.0, -a], voiced)                              # spectral tilt
    ref = np.sqrt(np.mean(voiced[av > 0.5] ** 2)) if np.any(av > 0.5) else 1e-3
    aspiration = ref * rng.standard_normal(n) * (
        p["breathiness"] * av * (0.3 + 0.7 * flow / max(flow.max(), 1e-9)) + 0.5 * ah)
    source = voiced + aspiration

    # Cascade of five formant resonators, coefficients updated every block, state carried over.
    freqs = np.concatenate([formants, np.full((n_blocks, 1), _F5 * speaker.vtl_scale)], axis=1)
    freqs = np.minimum(freqs, 0.45 * sr)
    bw = _BANDWIDTHS * np.array([1.0 + 2.0 * p["breathiness"], 1.0, 1.0, 1.0, 1.0])
    out = source.reshape(n_blocks, BLOCK)
    for i in range(freqs.shape[1]):
        out = _resonator(out, freqs[:, i], bw[i])
    out = out.reshape(-1)

    # Parallel frication branch: band-pass noise gated by each class's envelope.
    ref_out = np.sqrt(np.mean(out[av > 0.5] ** 2)) if np.any(av > 0.5) else 1e-3
    for j, name in enumerate(_NOISE_CLASSES):
        mask = noise_idx == j
        if not mask.any():
            continue
        env = up(_smooth(np.where(mask, af_b, 0.0), 3))
        if name not in _NOISE_FILTERS:
            _NOISE_FILTERS[name] = _noise_sos(name)
        noise = sosfilt(_NOISE_FILTERS[name], rng.standard_normal(n))
        noise /= np.sqrt(np.mean(noise ** 2))
        out += ref_out * _NOISE[name][2] * env * noise

    # Level: the drawn speech level on the speech portions, a faint noise floor, peak ceiling.
    speech = (av + ah + up(af_b)) > 0.3
    rms = np.sqrt(np.mean(out[speech] ** 2))
    out *= 10.0 ** ((REFERENCE_LEVEL_DBFS + p["level_db"]) / 20.0) / max(rms, 1e-12)
    out += 10.0 ** (-66.0 / 20.0) * rng.standard_normal(n)
    # Soft-knee limiter on the few glottal-closure peaks above LIMITER_KNEE (the loud emotions' level
    # is kept, as a recording chain with a limiter would), then a hard guarantee of the ceiling.
    over = np.abs(out) > LIMITER_KNEE
    if over.any():
        room = PEAK_CEILING - LIMITER_KNEE
        out[over] = np.sign(out[over]) * (LIMITER_KNEE + room * np.tanh((np.abs(out[over]) - LIMITER_KNEE)
                                                                        / room))
    peak = np.max(np.abs(out))
    if peak > PEAK_CEILING:
        out *= PEAK_CEILING / peak
    return out


# --------------------------------------------------------------------------------------------
# Corpus generation
# --------------------------------------------------------------------------------------------
def _jobs(size: str, seed: int) -> list[tuple]:
    spec = SIZES[size]
    jobs = []
    for spk in spec["speakers"]:
        for sent in spec["sentences"]:
            for emo in EMOTIONS:
                jobs.append((spk, sent, emo, seed))
    return jobs


def _write_wav(path: Path, y: np.ndarray) -> None:
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def _render(job: tuple, wav_dir: str) -> dict:
    """Synthesise and write one file; return its metadata row (path relative to the corpus)."""
    spk, sent, emo, seed = job
    s_i = list(SPEAKERS).index(spk)
    t_i = list(SENTENCES).index(sent)
    e_i = list(EMOTIONS).index(emo)
    rng = np.random.default_rng(np.random.SeedSequence([seed, s_i, t_i, e_i]))
    y = synthesize_utterance(SPEAKERS[spk], SENTENCES[sent], EMOTIONS[emo], rng)
    utt_id = f"{spk}{sent}{emo}a"
    _write_wav(Path(wav_dir) / f"{utt_id}.wav", y)
    return dict(utt_id=utt_id, path=f"wav/{utt_id}.wav", speaker=spk, gender=SPEAKERS[spk].gender,
                emotion=EMOTIONS[emo].name, text=sent, take="a", duration=len(y) / SAMPLE_RATE)


def _is_complete(root: Path, size: str, seed: int) -> bool:
    try:
        stamp = json.loads((root / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("generator_version") != GENERATOR_VERSION or stamp.get("seed") != seed \
            or stamp.get("size") != size or not (root / "metadata.csv").is_file():
        return False
    return len(list((root / "wav").glob("*.wav"))) == stamp.get("n_files")


def generate_corpus(root, *, size: str = "full", seed: int = 0, progress: bool = True,
                    n_jobs: int | None = None) -> Path:
    """Generate the synthetic corpus into ``root`` (atomically) and return ``root``.

    Writes ``root/wav/SSTTTEv.wav`` (16 kHz mono 16-bit PCM), ``root/metadata.csv`` (the columns of
    :func:`sercore.load_corpus`, ``path`` relative to ``root``), ``root/README.md`` and a stamp
    ``root/synth.json`` (generator version, seed, size, file count). Everything is written into a
    temporary sibling folder that is renamed to ``root`` at the end, so an interrupted run leaves no
    half corpus and an existing corpus stays intact until the new one is complete. If ``root``
    already holds a complete corpus of the same size, seed and generator version, nothing is done.

    Parameters
    ----------
    root : str or os.PathLike
        Corpus folder to create (its parent is created if needed).
    size : {"full", "small"}
        "full": 10 speakers x 7 emotions x 10 sentences = 700 files (1.3-4.5 s).
        "small": 4 speakers (2 female, 2 male) x 7 emotions x 2 short sentences = 56 files.
    seed : int
        Seed of every random draw; the same seed gives byte-identical files.
    progress : bool
        Show a tqdm progress bar.
    n_jobs : int, optional
        Worker threads; default ``min(2, os.cpu_count())``.

    Returns
    -------
    pathlib.Path
        The corpus folder.

    Raises
    ------
    ConfigError
        Unknown ``size``.
    CorpusError
        ``root`` exists and holds something other than a synthetic corpus.
    """
    import pandas as pd
    from tqdm import tqdm  # not tqdm.auto: without ipywidgets it warns in every notebook

    if size not in SIZES:
        raise ConfigError(f"unknown synthetic corpus size {size!r}; use one of {sorted(SIZES)}")
    seed = int(seed)
    root = Path(root).expanduser().resolve()
    if _is_complete(root, size, seed):
        return root
    if root.exists() and not (root.is_dir() and (not any(root.iterdir()) or (root / _STAMP).exists())):
        raise CorpusError(f"{root}: exists and is not a synthetic corpus; remove it or choose another "
                          "folder for the synthetic corpus")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    wav_dir = tmp / "wav"
    wav_dir.mkdir(parents=True)
    try:
        jobs = _jobs(size, seed)
        if n_jobs is None:
            n_jobs = min(2, os.cpu_count() or 1)
        bar = dict(total=len(jobs), disable=not progress, desc=f"synthesising {SIZES[size]['corpus']}",
                   unit="utt")
        if n_jobs > 1:
            # Threads, not processes: numpy and scipy release the GIL in the array work that dominates,
            # and threads need no `if __name__ == "__main__"` guard in user scripts nor a fork of a
            # process that runs JAX. Each job has its own seed, so the order of work does not matter.
            from collections import deque
            from concurrent.futures import ThreadPoolExecutor

            rows, pending = [], deque()
            # At most 2 * n_jobs jobs queued, so an error or Ctrl-C stops the run promptly.
            with ThreadPoolExecutor(n_jobs) as pool, tqdm(**bar) as pbar:
                for job in jobs:
                    pending.append(pool.submit(_render, job, str(wav_dir)))
                    if len(pending) >= 2 * n_jobs:
                        rows.append(pending.popleft().result())
                        pbar.update()
                while pending:
                    rows.append(pending.popleft().result())
                    pbar.update()
        else:
            rows = [_render(j, str(wav_dir)) for j in tqdm(jobs, **bar)]
        df = pd.DataFrame(rows)
        df["corpus"] = SIZES[size]["corpus"]
        df["intensity"] = None
        df["sample_rate"] = SAMPLE_RATE
        df["recognition"] = np.nan
        df["naturalness"] = np.nan
        df = df[METADATA_COLUMNS].sort_values("path").reset_index(drop=True)
        df.to_csv(tmp / "metadata.csv", index=False, float_format="%.4f")
        (tmp / "README.md").write_text(_readme(size, seed, df))
        (tmp / _STAMP).write_text(json.dumps(dict(generator_version=GENERATOR_VERSION, seed=seed,
                                                  size=size, corpus=SIZES[size]["corpus"],
                                                  n_files=len(df), sample_rate=SAMPLE_RATE), indent=1))
        # Swap in: move an older corpus aside first (a directory rename cannot replace a full one).
        old = None
        if root.exists():
            if _is_complete(root, size, seed):        # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if old is not None:                        # put the previous corpus back
                os.replace(old, root)
            elif _is_complete(root, size, seed):       # another process got there in between
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _readme(size: str, seed: int, df) -> str:
    spec = SIZES[size]
    durations = df["duration"]
    return f"""# {spec['corpus']} — sercore's built-in synthetic emotional speech corpus

Generated by `sercore.synth.generate_corpus(root, size="{size}", seed={seed})`, generator version
{GENERATOR_VERSION}. It is not human speech: a source-filter synthesiser (Rosenberg glottal pulses with
jitter, shimmer and aspiration; five cascaded formant resonators; noise fricatives and bursts) speaks
{len(spec['sentences'])} fixed pseudo-German sentences with prosody and voice quality drawn per utterance
from emotion profiles based on Banse & Scherer (1996), Juslin & Laukka (2003) and Scherer (2003).
See the docstring of `sercore/synth.py` for the model and the profiles.

- `wav/`: {len(df)} files, {SAMPLE_RATE} Hz, mono, 16-bit PCM; durations
  {durations.min():.2f}–{durations.max():.2f} s (mean {durations.mean():.2f} s). EmoDB name scheme
  `SSTTTEv.wav`: speaker, text, emotion letter (W anger, L boredom, E disgust, A fear,
  F happiness, T sadness, N neutral), version letter.
- Speakers: {', '.join(f'{s} {SPEAKERS[s].gender[0]}' for s in spec['speakers'])} (EmoDB ids and genders).
- `metadata.csv`: one row per file, the columns of `sercore.load_corpus` (`path` relative to this folder).
- `synth.json`: generator version, seed, size, file count (`generate_corpus` regenerates the
  corpus when they differ from what it is asked for).

Same seed and generator version give byte-identical files. Regenerate rather than copy.
Speaker-independent difficulty: `sercore.synth.baseline_accuracy(root=...)` (logistic regression on
the mean and standard deviation of 40 log-mel bands, folds by speaker).
"""


# --------------------------------------------------------------------------------------------
# Difficulty check
# --------------------------------------------------------------------------------------------
def baseline_accuracy(df=None, root=None, seed: int = 0, n_splits: int = 5) -> dict:
    """Speaker-independent accuracy of a simple classifier: how hard is a corpus?

    Features are the per-utterance mean and standard deviation of 40 log-mel bands (32 ms windows,
    10 ms hop, dB re full scale, so level counts: 80 numbers an utterance;
    :func:`sercore.baselines.logmel_stats`, cached like the ``logmel_lr`` baseline); the classifier is
    standardisation + logistic regression; folds are :class:`sklearn.model_selection.GroupKFold` by
    speaker, so no test speaker is seen in training. The figure says how much emotion the coarse
    spectral statistics carry, not what a CNN reaches. On the full synthetic corpus (seed 0,
    generator 1.1) it was about 0.57; on the real EmoDB (535 files) about 0.53; chance is 0.14.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        Utterances with columns ``path``, ``speaker``, ``emotion`` (e.g. from
        :func:`sercore.load_corpus`). Relative paths are taken relative to ``root``.
    root : str or os.PathLike, optional
        Corpus folder; with ``df`` None, its ``metadata.csv`` is read.
    seed : int
        Seed of the classifier (the folds are deterministic).
    n_splits : int
        Number of speaker folds (5 on ten speakers: two test speakers a fold).

    Returns
    -------
    dict
        ``fold_accuracy`` (list of float), ``mean_accuracy``, ``std_accuracy``, ``chance``
        (1 / number of emotions), ``n_utterances``, ``n_speakers``, ``classifier``, ``features``.
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if df is None:
        if root is None:
            raise ConfigError("baseline_accuracy needs a DataFrame (df=) or a corpus folder (root=)")
        meta = Path(root) / "metadata.csv"
        if not meta.is_file():
            raise CorpusError(f"{meta}: not found; generate the corpus first with "
                              "sercore.synth.generate_corpus(root)")
        df = pd.read_csv(meta)
    paths = [str(Path(root) / p) if root is not None and not Path(p).is_absolute() else str(p)
             for p in df["path"]]
    from .baselines import baseline_features

    # the one implementation of these statistics (also the `logmel_lr` baseline's features), cached
    X = baseline_features(df.assign(path=paths), "logmel_stats", progress=False)
    y = df["emotion"].to_numpy()
    groups = df["speaker"].astype(str).to_numpy()
    n_speakers = len(np.unique(groups))
    if n_speakers < n_splits:
        raise ConfigError(f"baseline_accuracy: {n_speakers} speakers cannot make {n_splits} speaker "
                          "folds; pass a smaller n_splits")
    accs = []
    for train, test in GroupKFold(n_splits=n_splits).split(X, y, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=seed))
        clf.fit(X[train], y[train])
        accs.append(float(np.mean(clf.predict(X[test]) == y[test])))
    return dict(fold_accuracy=accs, mean_accuracy=float(np.mean(accs)), std_accuracy=float(np.std(accs)),
                chance=1.0 / len(np.unique(y)), n_utterances=int(len(df)), n_speakers=int(n_speakers),
                classifier="StandardScaler + LogisticRegression(C=1)",
                features="mean+std of 40 log-mel bands (n_fft 512, hop 160, 16 kHz)")
