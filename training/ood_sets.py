"""Out-of-distribution inputs we build ourselves, as users would send them: images (PIL, any
size), texts (str) and audio (float32 mono at 16 kHz). Nothing is downloaded; every generator
is seeded, so a `fit` and a `report` half never share an item."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

SAMPLE_RATE = 16000

# -- images ------------------------------------------------------------------------------------


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(28, 257)), int(rng.integers(28, 257))


def blank_images(n: int, rng: np.random.Generator) -> list[Image.Image]:
    """White, black or paper-grey pages, at random sizes."""
    levels = rng.choice([0, 255, 240, 250, 230], size=n)
    return [Image.new("RGB", _size(rng), (int(v),) * 3) for v in levels]


def uniform_colour_images(n: int, rng: np.random.Generator) -> list[Image.Image]:
    return [
        Image.new("RGB", _size(rng), tuple(int(c) for c in rng.integers(0, 256, 3)))
        for _ in range(n)
    ]


def uniform_noise_images(n: int, rng: np.random.Generator) -> list[Image.Image]:
    """Every pixel (colour or grey) uniform in [0, 255]."""
    out = []
    for _ in range(n):
        w, h = _size(rng)
        channels = 3 if rng.random() < 0.5 else 1
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        out.append(Image.fromarray(pixels[..., 0] if channels == 1 else pixels))
    return out


def gaussian_noise_images(n: int, rng: np.random.Generator) -> list[Image.Image]:
    """A random mean level plus Gaussian noise of random strength, grey or colour."""
    out = []
    for _ in range(n):
        w, h = _size(rng)
        channels = 3 if rng.random() < 0.5 else 1
        mean = rng.uniform(40, 215, channels)
        pixels = rng.normal(mean, rng.uniform(10, 80), (h, w, channels))
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        out.append(Image.fromarray(pixels[..., 0] if channels == 1 else pixels))
    return out


def array_images(pixels: np.ndarray) -> list[Image.Image]:
    """uint8 [N, H, W] (grey) or [N, H, W, 3] (RGB) as PIL images, as a user would upload them."""
    return [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]


# -- text --------------------------------------------------------------------------------------

# A few real sentences per language, about films and everyday things, plus each language's
# common words: the generator mixes both, so short and long texts of each language appear.
FOREIGN_SENTENCES = {
    "german": [
        "Der Film war viel zu lang und die Schauspieler haben mich nicht überzeugt.",
        "Ich habe mich den ganzen Abend gelangweilt, schade um das Geld.",
        "Eine wunderbare Geschichte mit einer großartigen Musik.",
        "Die Handlung ist vorhersehbar, aber die Bilder sind schön.",
        "Morgen fahren wir mit dem Zug nach Berlin zu meiner Schwester.",
        "Das Wetter ist heute sehr schlecht, es regnet seit dem Morgen.",
        "Kannst du mir bitte sagen, wo der nächste Bahnhof ist?",
        "Wir haben gestern Abend zusammen gekocht und viel gelacht.",
    ],
    "french": [
        "Ce film est beaucoup trop long et les acteurs ne sont pas convaincants.",
        "J'ai passé une excellente soirée, l'histoire est magnifique.",
        "Le scénario est prévisible mais la musique est très belle.",
        "Nous allons au marché samedi matin pour acheter des légumes.",
        "Il fait très froid aujourd'hui, je vais rester à la maison.",
        "Pouvez-vous me dire où se trouve la gare, s'il vous plaît?",
        "Les enfants jouent dans le jardin pendant que nous préparons le dîner.",
        "Je n'ai jamais vu un spectacle aussi ennuyeux de toute ma vie.",
    ],
    "spanish": [
        "La película es demasiado larga y los actores no convencen a nadie.",
        "Me encantó la historia, la música y la fotografía son preciosas.",
        "El guion es previsible pero el final me sorprendió mucho.",
        "Mañana vamos a la playa con mis primos si hace buen tiempo.",
        "¿Dónde está la estación de tren más cercana, por favor?",
        "Mi abuela cocina la mejor tortilla de todo el pueblo.",
        "No entiendo por qué todos hablan tan bien de esta serie.",
        "Hemos caminado durante horas por las calles de la ciudad.",
    ],
    "italian": [
        "Il film è troppo lungo e gli attori non sono convincenti.",
        "Una storia bellissima, con una colonna sonora meravigliosa.",
        "La trama è prevedibile ma la fotografia è splendida.",
        "Domani andiamo al mare con i nostri amici di Milano.",
        "Scusi, sa dirmi dove si trova la stazione dei treni?",
        "Mia nonna prepara la pasta fresca ogni domenica mattina.",
    ],
    "dutch": [
        "De film was veel te lang en de acteurs waren niet overtuigend.",
        "Een prachtig verhaal met geweldige muziek en mooie beelden.",
        "Morgen gaan we met de fiets naar de markt in het centrum.",
        "Het regent al de hele dag en ik heb geen zin om naar buiten te gaan.",
        "Kun je me vertellen waar het station is, alstublieft?",
    ],
    "portuguese": [
        "O filme é muito longo e os atores não convencem ninguém.",
        "Uma história linda, com uma trilha sonora maravilhosa.",
        "Amanhã vamos à praia com os nossos amigos de Lisboa.",
        "Você pode me dizer onde fica a estação de trem, por favor?",
        "A minha avó faz o melhor bolo de chocolate do mundo.",
    ],
    "swedish": [
        "Filmen var alldeles för lång och skådespelarna var inte bra.",
        "En underbar berättelse med fantastisk musik.",
        "I morgon åker vi till landet och hälsar på min mormor.",
        "Kan du säga var tågstationen ligger, tack?",
    ],
    "polish": [
        "Film był zdecydowanie za długi, a aktorzy nie byli przekonujący.",
        "Piękna historia i wspaniała muzyka, polecam wszystkim.",
        "Jutro jedziemy pociągiem do Krakowa odwiedzić rodzinę.",
        "Czy może mi pan powiedzieć, gdzie jest dworzec?",
    ],
}


def foreign_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Real sentences, and new ones made by joining 1–3 sentences or re-ordering one's words,
    in eight European languages: 5–60 words each."""
    languages = sorted(FOREIGN_SENTENCES)
    out = []
    for _ in range(n):
        pool = FOREIGN_SENTENCES[languages[rng.integers(len(languages))]]
        picked = [pool[i] for i in rng.permutation(len(pool))[: rng.integers(1, 4)]]
        if rng.random() < 0.3:
            words = " ".join(picked).split()
            picked = [" ".join(words[i] for i in rng.permutation(len(words)))]
        out.append(" ".join(picked))
    return out


_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiouy"


def gibberish_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Pronounceable nonsense syllables, random letter strings and keyboard mashing."""
    out = []
    for _ in range(n):
        kind = rng.integers(3)
        words = []
        for _ in range(rng.integers(3, 31)):
            if kind == 0:
                syllables = rng.integers(1, 4)
                words.append(
                    "".join(
                        _CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(6)]
                        for _ in range(syllables)
                    )
                )
            elif kind == 1:
                letters = "abcdefghijklmnopqrstuvwxyz"
                words.append("".join(letters[i] for i in rng.integers(0, 26, rng.integers(2, 10))))
            else:
                rows = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
                row = rows[rng.integers(3)]
                start = rng.integers(0, len(row) - 3)
                words.append(row[start : start + rng.integers(3, len(row) - start + 1)])
        text = " ".join(words)
        out.append(text.capitalize() + ("." if rng.random() < 0.5 else ""))
    return out


def shuffled_texts(texts: list[str], rng: np.random.Generator) -> list[str]:
    """Real reviews with their words in random order: English words, no English sentences."""
    out = []
    for text in texts:
        words = text.split()
        out.append(" ".join(words[i] for i in rng.permutation(len(words))))
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]{4}")


def last_sentences(texts: list[str], min_words: int = 5, max_words: int = 30) -> list[str]:
    """Each review's last sentence of `min_words`–`max_words` words (reviews without one are
    skipped): the one-line reviews users send, still in distribution."""
    return [sentence for _, sentence in last_sentence_of_each(texts, min_words, max_words)]


def last_sentence_of_each(
    texts: list[str], min_words: int = 5, max_words: int = 30
) -> list[tuple[int, str]]:
    """(index of the review, its last sentence of `min_words`–`max_words` words)."""
    out = []
    for index, text in enumerate(texts):
        for sentence in reversed(sentences_of(text)):
            if min_words <= len(sentence.split()) <= max_words:
                out.append((index, sentence))
                break
    return out


def short_sentences(texts: list[str], max_words: int = 4) -> list[str]:
    """Every sentence of 1-`max_words` words in the texts ("Awful.", "Highly recommended."):
    the shortest reviews users send, still English review text. Splitting leaves initials and
    abbreviations ("Mr.", "S."), so a sentence needs a word of four letters or more."""
    return [
        s
        for text in texts
        for s in sentences_of(text)
        if 1 <= len(s.split()) <= max_words and _WORD.search(s)
    ]


def sentences_of(text: str) -> list[str]:
    return _SENTENCE_END.split(_HTML_BREAK.sub(" ", text).strip())


# -- audio -------------------------------------------------------------------------------------


def _level(rng: np.random.Generator, n: int) -> np.ndarray:
    """Peak-ish amplitudes from quiet to loud (−40 to −6 dBFS)."""
    return 10 ** (rng.uniform(-40, -6, n) / 20)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal((n, SAMPLE_RATE)) * _level(rng, n)[:, None]).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal((n, SAMPLE_RATE)), axis=1)
    freqs = np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 1.0))[None, :]
    wave = np.fft.irfft(spectrum, n=SAMPLE_RATE, axis=1)
    wave /= wave.std(axis=1, keepdims=True)
    return (wave * _level(rng, n)[:, None]).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) under a little hiss: a quiet room with a bad cable."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    out = np.empty((n, SAMPLE_RATE), np.float32)
    for i in range(n):
        base = rng.choice([50.0, 60.0])
        wave = sum(
            rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
            for k in range(1, 6)
        )
        wave = wave / np.abs(wave).max() + 0.01 * rng.standard_normal(SAMPLE_RATE)
        out[i] = wave * _level(rng, 1)[0]
    return out


def tones(n: int, rng: np.random.Generator) -> np.ndarray:
    """Steady tones, sweeps and beeps (200 Hz–5 kHz), as from a phone, an alarm or a test."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    out = np.empty((n, SAMPLE_RATE), np.float32)
    for i in range(n):
        f0, f1 = rng.uniform(200, 5000, 2)
        kind = rng.integers(3)
        if kind == 0:
            f1 = f0  # a steady tone; otherwise a linear sweep
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / 2)
        wave = np.sin(phase)
        if kind == 2:  # beeps
            wave *= (np.sin(2 * np.pi * rng.uniform(2, 8) * t) > 0).astype(np.float64)
        out[i] = wave * _level(rng, 1)[0]
    return out


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A few notes with harmonics and decay: a melody fragment."""
    out = np.zeros((n, SAMPLE_RATE), np.float32)
    for i in range(n):
        notes = rng.integers(2, 7)
        length = SAMPLE_RATE // notes
        t = np.arange(length) / SAMPLE_RATE
        for j in range(notes):
            freq = 220 * 2 ** (rng.integers(0, 25) / 12)
            note = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in range(1, 5))
            out[i, j * length : (j + 1) * length] = note * np.exp(-3 * t)
        out[i] *= _level(rng, 1)[0] / max(np.abs(out[i]).max(), 1e-6)
    return out
