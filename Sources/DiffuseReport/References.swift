/// The works a report cites, as the BibTeX file `references.bib` beside `report.md` that pandoc's citeproc reads;
/// the text cites them by key ([@ho2020]).
let references = """
    @inproceedings{goodfellow2014,
      author = {Goodfellow, Ian and Pouget-Abadie, Jean and Mirza, Mehdi and Xu, Bing and Warde-Farley, David and Ozair, Sherjil and Courville, Aaron and Bengio, Yoshua},
      title = {Generative Adversarial Nets}, booktitle = {Advances in Neural Information Processing Systems}, volume = {27}, year = {2014}}
    @inproceedings{kingma2014,
      author = {Kingma, Diederik P. and Welling, Max}, title = {Auto-Encoding Variational {Bayes}},
      booktitle = {International Conference on Learning Representations}, year = {2014}}
    @inproceedings{heusel2017,
      author = {Heusel, Martin and Ramsauer, Hubert and Unterthiner, Thomas and Nessler, Bernhard and Hochreiter, Sepp},
      title = {{GANs} Trained by a Two Time-Scale Update Rule Converge to a Local {Nash} Equilibrium},
      booktitle = {Advances in Neural Information Processing Systems}, volume = {30}, year = {2017}}
    @inproceedings{ho2020,
      author = {Ho, Jonathan and Jain, Ajay and Abbeel, Pieter}, title = {Denoising Diffusion Probabilistic Models},
      booktitle = {Advances in Neural Information Processing Systems}, volume = {33}, year = {2020}}
    @inproceedings{song2021,
      author = {Song, Jiaming and Meng, Chenlin and Ermon, Stefano}, title = {Denoising Diffusion Implicit Models},
      booktitle = {International Conference on Learning Representations}, year = {2021}}
    @inproceedings{rombach2022,
      author = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, Patrick and Ommer, Bj{\\"o}rn},
      title = {High-Resolution Image Synthesis with Latent Diffusion Models},
      booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition}, pages = {10684--10695}, year = {2022}}
    @inproceedings{liu2022,
      author = {Liu, Luping and Ren, Yi and Lin, Zhijie and Zhao, Zhou}, title = {Pseudo Numerical Methods for Diffusion Models on Manifolds},
      booktitle = {International Conference on Learning Representations}, year = {2022}}
    @inproceedings{karras2022,
      author = {Karras, Tero and Aittala, Miika and Aila, Timo and Laine, Samuli},
      title = {Elucidating the Design Space of Diffusion-Based Generative Models},
      booktitle = {Advances in Neural Information Processing Systems}, volume = {35}, year = {2022}}
    @article{lu2022,
      author = {Lu, Cheng and Zhou, Yuhao and Bao, Fan and Chen, Jianfei and Li, Chongxuan and Zhu, Jun},
      title = {{DPM-Solver++}: Fast Solver for Guided Sampling of Diffusion Probabilistic Models},
      journal = {arXiv preprint arXiv:2211.01095}, year = {2022}}
    @inproceedings{zhang2023,
      author = {Zhang, Qinsheng and Chen, Yongxin}, title = {Fast Sampling of Diffusion Models with Exponential Integrator},
      booktitle = {International Conference on Learning Representations}, year = {2023}}
    @inproceedings{zhao2023,
      author = {Zhao, Wenliang and Bai, Lujia and Rao, Yongming and Zhou, Jie and Lu, Jiwen},
      title = {{UniPC}: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models},
      booktitle = {Advances in Neural Information Processing Systems}, volume = {36}, year = {2023}}
    @inproceedings{lipman2023,
      author = {Lipman, Yaron and Chen, Ricky T. Q. and Ben-Hamu, Heli and Nickel, Maximilian and Le, Matt},
      title = {Flow Matching for Generative Modeling}, booktitle = {International Conference on Learning Representations}, year = {2023}}
    @inproceedings{liu2023,
      author = {Liu, Xingchao and Gong, Chengyue and Liu, Qiang},
      title = {Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow},
      booktitle = {International Conference on Learning Representations}, year = {2023}}
    @inproceedings{esser2024,
      author = {Esser, Patrick and Kulal, Sumith and Blattmann, Andreas and others},
      title = {Scaling Rectified Flow Transformers for High-Resolution Image Synthesis},
      booktitle = {International Conference on Machine Learning}, year = {2024}}
    @inproceedings{sabour2024,
      author = {Sabour, Amirmojtaba and Fidler, Sanja and Kreis, Karsten}, title = {Align Your Steps: Optimizing Sampling Schedules in Diffusion Models},
      booktitle = {International Conference on Machine Learning}, year = {2024}}

    """
